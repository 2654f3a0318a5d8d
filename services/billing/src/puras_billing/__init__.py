"""puras_billing."""
