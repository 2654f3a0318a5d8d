"""The state directory of a single-machine installation (``.puras/``, or ``PURAS_HOME``).

It holds the embedded engines' data, the control-plane credentials and the local workspace's
API key. Jobs run as an unprivileged uid: the directory itself is traversable but not listable,
and everything secret inside it is 0600/0700.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import orjson
from puras_common.access import Credentials

from puras_cli.engines import free_port


class Home:
    def __init__(self, path: Path | None = None) -> None:
        self.path = (path or Path(os.environ.get("PURAS_HOME", ".puras"))).resolve()

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o711)

    def _read(self, name: str) -> dict[str, Any] | None:
        file = self.path / name
        return orjson.loads(file.read_bytes()) if file.exists() else None

    def _write(self, name: str, data: dict[str, Any]) -> None:
        file = self.path / name
        tmp = file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, file)

    def credentials(self) -> Credentials:
        """This installation's credentials, generated on first use."""
        data = self._read("credentials.json")
        if data is None:
            creds = Credentials.generate()
            self._write("credentials.json", dataclasses.asdict(creds))
            return creds
        creds = Credentials(**data)
        if set(dataclasses.asdict(creds)) - set(data):
            # A credential added since this installation began: generate it once and keep it.
            self._write("credentials.json", dataclasses.asdict(creds))
        return creds

    def ports(self, names: tuple[str, ...], preferred: dict[str, int]) -> dict[str, int]:
        """Ports chosen once and remembered, so a restart finds the same services."""
        ports = self._read("ports.json") or {}
        changed = False
        for name in names:
            if name not in ports:
                want = preferred.get(name)
                ports[name] = want if want and _free(want) else free_port()
                changed = True
        if changed:
            self._write("ports.json", ports)
        return ports

    def local(self) -> dict[str, Any]:
        return self._read("local.json") or {}

    def save_local(self, data: dict[str, Any]) -> None:
        self._write("local.json", data)


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
