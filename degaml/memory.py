"""Peak memory in windows: several methods run in one process and each gets its own peak, while the
process's peak over all windows is kept for the run as a whole.

Linux: VmHWM (from /proc/self/status) is the peak resident set, and writing 5 to /proc/self/clear_refs
resets it. Elsewhere there is no reset, so every window reports the process-wide peak.
"""

from __future__ import annotations

import resource
from contextlib import suppress
from pathlib import Path

import torch

_earlier_windows_kib = 0  # the largest peak of the windows closed by a reset


def _window_peak_kib() -> int:
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.is_file() else []
    hwm = [int(line.split()[1]) for line in lines if line.startswith("VmHWM:")]
    return hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # both KiB on Linux


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (the closing window's peak still counts for `process_peak_mb`)."""
    global _earlier_windows_kib
    _earlier_windows_kib = max(_earlier_windows_kib, _window_peak_kib())
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident memory since the last `reset_peak_memory` (or process start), and CUDA's peak."""
    peak = {"peak_rss_mb": _window_peak_kib() / 1024}
    if device.type == "cuda":
        peak["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def process_peak_mb() -> float:
    """Peak resident memory of the whole process so far, across every window."""
    return max(_earlier_windows_kib, _window_peak_kib()) / 1024
