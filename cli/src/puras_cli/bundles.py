"""Zipping a project directory the way a push sends it."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

EXCLUDED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".puras",
}


def zip_project(directory: Path) -> bytes:
    """The project as a zip (in memory; bundles are small), without VCS and build clutter."""
    if not (directory / "skills").is_dir():
        raise FileNotFoundError(f"{directory} has no skills/ directory")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS)
            for name in sorted(files):
                path = Path(root) / name
                if path.is_symlink() or name.endswith(".pyc"):
                    continue
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()
