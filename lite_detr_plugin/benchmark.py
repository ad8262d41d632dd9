"""Timing and peak-memory measurement shared by the benchmarks in tools/.

Times are medians over repeats after warm-up; CUDA is synchronised around each
repeat. Extra peak memory is what a call adds above what was live before it:
``torch.cuda.max_memory_allocated`` on CUDA, and on CPU the peak resident set
(``VmHWM``, reset through ``/proc/self/clear_refs``) above the resident set
before the call. CPU figures are only meaningful in a fresh process per
measurement (freed memory kept by the allocator would hide later peaks), so
the tools run each measurement in a subprocess.
"""
import statistics
import time
from typing import Callable, Dict

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time_ms(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_cpu_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def extra_peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory ``fn()`` adds above what is live before the call, in MiB."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if not _reset_cpu_peak():
        return float("nan")
    before = _proc_status_kb("VmRSS")
    fn()
    return (_proc_status_kb("VmHWM") - before) / 1024


def measure(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 5) -> Dict[str, float]:
    """Extra peak memory of the first call (before warm-up), then the median time."""
    memory = extra_peak_memory_mb(fn, device)
    return {"median_ms": median_time_ms(fn, device, warmup=max(warmup - 1, 0), repeats=repeats), "peak_mb": memory}
