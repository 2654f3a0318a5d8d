"""Run first inside a networked sandbox, before the zygote: open the sandbox's egress port.

``python -I -S _egress_listen.py <socket> <port> <program...>`` listens on ``127.0.0.1:<port>``
in the sandbox's own network namespace, hands the listening socket to the platform over the
Unix socket ``<socket>`` (SCM_RIGHTS), waits for its acknowledgement and closes its copy, then
execs ``<program...>``. Nothing stays behind in the sandbox: the platform's proxy accepts on
that socket from outside, so every connection a job makes to the port is answered by the
platform, and the namespace has no other way out. Standard library only.
"""

from __future__ import annotations

import os
import socket
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 4:
        raise SystemExit("usage: _egress_listen.py <socket> <port> <program...>")
    path, port, program = argv[1], int(argv[2]), argv[3:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.settimeout(20)
        channel.connect(path)
        socket.send_fds(channel, [b"L"], [listener.fileno()])
        if channel.recv(1) != b"K":
            raise SystemExit("the platform did not take the sandbox's egress port")
    listener.close()
    os.execv(program[0], program)


if __name__ == "__main__":
    main(sys.argv)
