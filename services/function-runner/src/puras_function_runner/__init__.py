"""puras_function_runner."""
