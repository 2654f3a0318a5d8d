"""puras_webhooks: durable, signed, retried delivery of job events to a workspace's endpoints."""
