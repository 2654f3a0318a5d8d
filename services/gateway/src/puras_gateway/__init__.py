"""puras_gateway."""
