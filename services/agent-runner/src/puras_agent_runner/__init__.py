"""puras_agent_runner."""
