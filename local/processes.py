"""The one check that a recorded pid is still the server a `start` launched, shared by the local services
(the emulated bucket, Label Studio), so that a `stop` never ends somebody else's process."""

from __future__ import annotations

from collections.abc import Iterable

import psutil

#: create_time is boot time + ticks, and the boot time the OS reports can move by a second when the clock
#: is adjusted: allow that; the command-line check still tells a reused pid apart.
CREATE_TIME_TOLERANCE_S = 2.0


def launched_process(pid: int, create_time: float, markers: Iterable[str]) -> psutil.Process | None:
    """The live process `pid` if it started at `create_time` and its command line names one of `markers`."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE_S:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc if any(marker in cmdline for marker in markers) else None
