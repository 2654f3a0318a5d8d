"""puras."""
