"""puras_cli."""
