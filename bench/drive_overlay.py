"""What a job's own drive overlay costs the runner, against the shared folder's link.

For a workspace folder of N files (default 10,000), per job:

* attach + release: a symbolic link (make, remove) against the overlay (folders, mount,
  unmount, removal) -- the part that differs between the two;
* the teardown scan after the job wrote 10 files: the link's walk of the whole workspace folder
  (every file is ``lstat``-ed to compare change times) against the overlay's walk of the job's
  upper folder (only what the job wrote).

Needs root (the overlay mount). Uploads and the drive service are the same for both and are
not measured here.

    sudo .venv/bin/python bench/drive_overlay.py [--files N] [--runs R] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from puras_jobhost import overlay, safefs


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 3),
    }


def _workspace(root: Path, files: int) -> Path:
    folder = root / "workspace"
    for i in range(files):
        sub = folder / f"d{i % 100}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.txt").write_bytes(b"x" * 64)
    return folder


def _link(work: Path, lower: Path) -> tuple[float, float]:
    job = Path(tempfile.mkdtemp(dir=work))
    start = time.perf_counter()
    (job / "drive").symlink_to(lower)
    attached = time.perf_counter() - start
    for i in range(10):
        (lower / f"new-{job.name}-{i}.txt").write_bytes(b"y")
    start = time.perf_counter()
    fd = safefs.open_root(lower)
    try:
        sum(1 for _ in safefs.walk_files(fd))
    finally:
        os.close(fd)
    scanned = time.perf_counter() - start
    start = time.perf_counter()
    (job / "drive").unlink()
    attached += time.perf_counter() - start
    for i in range(10):
        (lower / f"new-{job.name}-{i}.txt").unlink()
    shutil.rmtree(job)
    return attached, scanned


def _overlay(work: Path, lower: Path) -> tuple[float, float]:
    job = Path(tempfile.mkdtemp(dir=work))
    start = time.perf_counter()
    scratch = work / ".overlays" / job.name
    upper, workdir, target = scratch / "upper", scratch / "work", job / "drive"
    scratch.mkdir(parents=True)
    upper.mkdir()
    workdir.mkdir()
    target.mkdir()
    overlay.mount_overlay(lower=lower, upper=upper, work=workdir, target=target)
    attached = time.perf_counter() - start
    for i in range(10):
        (target / f"new-{i}.txt").write_bytes(b"y")
    start = time.perf_counter()
    fd = safefs.open_root(upper)
    try:
        sum(1 for _ in safefs.walk_files(fd))
    finally:
        os.close(fd)
    scanned = time.perf_counter() - start
    start = time.perf_counter()
    overlay.unmount(target)
    shutil.rmtree(scratch)
    attached += time.perf_counter() - start
    shutil.rmtree(job)
    return attached, scanned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="puras-bench-overlay-"))
    try:
        lower = _workspace(root, args.files)
        work = root / "work"
        work.mkdir()
        results: dict[str, dict[str, dict[str, float]]] = {}
        for name, run in (("link", _link), ("overlay", _overlay)):
            attach, scan = [], []
            for _ in range(args.runs):
                a, s = run(work, lower)
                attach.append(a)
                scan.append(s)
            results[name] = {"attach_release": _ms(attach), "teardown_scan": _ms(scan)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps({"files": args.files, "runs": args.runs, **results}, indent=2))
        return
    print(f"workspace of {args.files} files, {args.runs} jobs each")
    for name, figures in results.items():
        print(
            f"{name:8} attach+release p50 {figures['attach_release']['p50_ms']:8.3f} ms"
            f"  p90 {figures['attach_release']['p90_ms']:8.3f} ms"
            f" | teardown scan p50 {figures['teardown_scan']['p50_ms']:8.3f} ms"
            f"  p90 {figures['teardown_scan']['p90_ms']:8.3f} ms"
        )


if __name__ == "__main__":
    main()
