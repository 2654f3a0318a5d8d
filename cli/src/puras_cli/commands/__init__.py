"""The ``puras`` commands that call the public API: one module per resource, each adding its
sub-commands with ``register``. They use only the Python client (``puras.Client``), so anything
they do, an app can do over HTTP with the same key."""
