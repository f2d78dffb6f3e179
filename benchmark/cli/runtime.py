"""Process-level tuning applied by the command-line entry points (never on library import)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def tune_allocator(threshold: int = 1 << 30) -> bool:
    """Keep freed activation buffers in glibc's heap instead of returning them to the OS.

    By default glibc serves allocations above 32 MiB with mmap and unmaps them on free, so every
    training step page-faults its activations in again; on the 2-core CI machine that spent a
    third of a LeNet-3 step in the kernel (`benchmark perf` measures the difference). Returns
    whether the setting took effect (only on glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
