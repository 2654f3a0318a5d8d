"""puras_scheduler."""
