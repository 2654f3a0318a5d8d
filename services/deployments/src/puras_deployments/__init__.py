"""puras_deployments."""
