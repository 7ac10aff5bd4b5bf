"""The targets are stated for 2 CPU cores: on a bigger machine, pin the benchmark (and its children) to 2."""

from __future__ import annotations

import os

TARGET_CPUS = 2


def pin_to_target_cpus() -> str:
    """Restrict this process and everything it starts to TARGET_CPUS cores; say what was done."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) <= TARGET_CPUS:
        return f"{len(available)} CPUs"
    os.sched_setaffinity(0, set(available[:TARGET_CPUS]))
    return f"pinned to CPUs {available[:TARGET_CPUS]} of {len(available)}"
