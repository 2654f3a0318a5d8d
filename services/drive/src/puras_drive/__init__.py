"""puras_drive."""
