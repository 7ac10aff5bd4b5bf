"""The targets are stated for 2 CPU cores: on a bigger machine, pin the benchmark (and its children) to 2."""

from __future__ import annotations

import os
import sys

TARGET_CPUS = 2


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity on Linux; macOS has no affinity: every core)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pin_to_target_cpus() -> str:
    """Restrict this process and everything it starts to TARGET_CPUS cores; say what was done."""
    if not hasattr(os, "sched_setaffinity"):  # macOS: no way to pin; say so next to the figures
        return f"{usable_cpus()} CPUs, not pinned ({sys.platform} cannot pin a process to cores)"
    available = sorted(os.sched_getaffinity(0))
    if len(available) <= TARGET_CPUS:
        return f"{len(available)} CPUs"
    os.sched_setaffinity(0, set(available[:TARGET_CPUS]))
    return f"pinned to CPUs {available[:TARGET_CPUS]} of {len(available)}"
