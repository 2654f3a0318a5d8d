"""Where the ``puras`` commands and the MCP server find the API and the key to call it with.

``puras login`` and the MCP ``configure`` tool write one file, ``$PURAS_CONFIG`` or
``$XDG_CONFIG_HOME/puras/config.json`` (``~/.config/puras/config.json``), created mode 0600 in a
0700 directory since it holds a secret key. Each command resolves, first found wins: its flags,
``PURAS_API_KEY`` / ``PURAS_API_BASE``, that file, and last the key ``puras up`` saved for the
local workspace (``.puras/local.json``), so a fresh ``make run`` works with no login at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_API_BASE = "http://127.0.0.1:8080"


class NotConfigured(Exception):
    """No API key anywhere a command looks."""

    def __str__(self) -> str:
        return (
            "no API key: run `puras login`, set PURAS_API_KEY, pass --api-key, "
            "or start a local platform with `puras up`"
        )


@dataclass(frozen=True)
class Config:
    api_base: str
    api_key: str
    workspace: str = ""
    """The workspace the key belongs to, as the API named it at login."""

    @property
    def key_prefix(self) -> str:
        """``puras_live_AbCd1234``: enough to recognise the key, nothing to use it with."""
        return self.api_key.split(".", 1)[0]


def config_path() -> Path:
    if explicit := os.environ.get("PURAS_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "puras" / "config.json"


def load_saved() -> Config | None:
    """The saved configuration, or None."""
    path = config_path()
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable configuration: {exc}") from None
    if not data.get("api_key"):
        return None
    return Config(
        api_base=str(data.get("api_base") or DEFAULT_API_BASE),
        api_key=str(data["api_key"]),
        workspace=str(data.get("workspace") or ""),
    )


def save(config: Config) -> Path:
    """Write the configuration, readable by its owner only; returns where."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(config), out, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def resolve(*, api_key: str | None = None, api_base: str | None = None) -> Config:
    """The key and base a command uses (see the module docstring for the order)."""
    saved = load_saved()
    key = api_key or os.environ.get("PURAS_API_KEY") or (saved.api_key if saved else None)
    if not key:
        from puras_cli.home import Home  # the embedded engines' module: only when needed

        key = Home().local().get("api_key")
    if not key:
        raise NotConfigured
    base = (
        api_base
        or os.environ.get("PURAS_API_BASE")
        or (saved.api_base if saved else None)
        or _local_gateway()
    )
    return Config(
        api_base=base.rstrip("/"), api_key=key, workspace=saved.workspace if saved else ""
    )


def _local_gateway() -> str:
    from puras_cli.home import Home

    ports = Home().path / "ports.json"
    if ports.exists():
        return f"http://127.0.0.1:{json.loads(ports.read_text())['gateway']}"
    return DEFAULT_API_BASE
