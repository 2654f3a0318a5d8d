"""Serving a stub on loopback: :func:`puras_common.testing.stubs.serve_app`, shared by every
provider stub."""

from puras_common.testing.stubs import serve_app

__all__ = ["serve_app"]
