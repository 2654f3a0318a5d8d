"""What both runners' settings share: their sandboxes' egress, and where jobs' drive writes wait."""

from __future__ import annotations

import os

from pydantic import Field

from puras_jobhost.egress import EgressSettings

_DEFAULT_SCRATCH_CAP = 4 * 1024**3


class JobHostSettings(EgressSettings):
    """A runner's settings for the jobs it hosts (``PURAS_<RUNNER>_*``)."""

    drive_scratch_memory_bytes: int | None = Field(default=None, ge=0)
    """On the local drive backend, a root runner gives each job an overlay of its workspace's
    folder as ``./drive``, and the job's writes land in an upper folder of the runner's until
    the job ends and they are saved. Those folders live in a memory file system of this size,
    shared by the runner's running jobs (a job writing past what is left gets ``ENOSPC``);
    0 keeps them on disk. By default a quarter of the host's memory, at most 4 GiB."""

    def scratch_memory_bytes(self) -> int:
        """``drive_scratch_memory_bytes``, or its default for this host."""
        if self.drive_scratch_memory_bytes is not None:
            return self.drive_scratch_memory_bytes
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return 0
        return min(_DEFAULT_SCRATCH_CAP, memory // 4)
