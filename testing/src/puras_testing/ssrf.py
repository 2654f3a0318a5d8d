"""The SSRF corpus both fetchers are tested against (the in-job SDK's and the platform's), and a
small HTTP server on a loopback address of its own for allowed fetches and hostile redirects."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from puras_cli.engines import free_port

HOSTILE_URLS: tuple[str, ...] = (
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/admin",
    "http://localhost/",
    "http://localhost./",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://0x7f.0.0.1/",
    "http://127.000.000.001/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",
    "http://[2002:7f00:1::]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://10.0.0.1/",
    "http://10.255.255.254/",
    "http://172.16.5.4/",
    "http://172.31.255.255/",
    "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    "http://100.64.0.1/",
    "http://100.100.100.200/",
    "http://192.0.0.192/",
    "http://192.0.0.8/",
    "http://[::ffff:0:a9fe:a9fe]/",
    "http://[fec0::1]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://user:pass@127.0.0.1/",
    "http://127.0.0.1#@example.com/",
    "https://127.0.0.1/",
    "file:///etc/passwd",
    "ftp://127.0.0.1/",
    "gopher://127.0.0.1:25/",
    "javascript:alert(1)",
    "//127.0.0.1/",
)


@dataclass
class LoopbackSite:
    """A server on ``host`` (a loopback address other than 127.0.0.1, so a policy can allow it
    alone) answering ``/ok`` with ``body``, ``/big`` with ``big_bytes`` of zeros, ``/slow`` never,
    and ``/redirect?to=<url>`` with a 302 to that URL."""

    host: str
    port: int
    body: bytes
    big_bytes: int

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def redirect(self, to: str) -> str:
        from urllib.parse import quote

        return f"{self.base}/redirect?to={quote(to, safe='')}"


@contextlib.contextmanager
def loopback_site(
    *, host: str = "127.0.0.2", body: bytes = b"fetched!", big_bytes: int = 1024
) -> Iterator[LoopbackSite]:
    stop = threading.Event()
    site = LoopbackSite(host, free_port(), body, big_bytes)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            from urllib.parse import parse_qs, urlsplit

            url = urlsplit(self.path)
            if url.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", parse_qs(url.query)["to"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/big":
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(site.big_bytes))
                self.end_headers()
                remaining = site.big_bytes
                while remaining:
                    n = min(remaining, 1 << 20)
                    self.wfile.write(bytes(n))
                    remaining -= n
            elif url.path == "/slow":
                stop.wait(30)
            else:
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(site.body)))
                self.end_headers()
                self.wfile.write(site.body)

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            return None  # clients the guard cut off mid-body are expected here

    server = Server((host, site.port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
