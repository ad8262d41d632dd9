"""Timing and peak-memory measurement that every benchmark in :mod:`lite_detr_plugin.benchmarks` uses.

Times are medians over repeats after warm-up; CUDA is synchronised around each
repeat. Extra peak memory is what a call adds above what was live before it:
``torch.cuda.max_memory_allocated`` on CUDA, and on CPU the peak resident set
(``VmHWM``, reset through ``/proc/self/clear_refs``) above the resident set
before the call. CPU figures are only meaningful in a fresh process per
measurement (freed memory kept by the allocator would hide later peaks), so
the benchmarks run each measurement in a subprocess.
"""
import statistics
import time
from typing import Callable, Dict, List, NamedTuple

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def elapsed_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one ``fn()`` in milliseconds, synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def times_ms(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 5) -> List[float]:
    """Wall times of ``repeats`` calls of ``fn()`` after ``warmup`` untimed ones, in milliseconds."""
    for _ in range(warmup):
        fn()
    return [elapsed_ms(fn, device) for _ in range(repeats)]


def median_time_ms(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    return statistics.median(times_ms(fn, device, warmup=warmup, repeats=repeats))


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


class FirstCall(NamedTuple):
    """What :func:`first_call` measured: ``fn()``'s result, its time and its extra peak memory."""

    result: object
    ms: float
    peak_mb: float  # NaN on a CPU where the peak cannot be reset (no /proc/self/clear_refs)


def first_call(fn: Callable[[], object], device: torch.device) -> FirstCall:
    """Calls ``fn()`` once, measuring its wall time and the peak memory it adds (MiB)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        ms = (time.perf_counter() - start) * 1e3
        return FirstCall(result, ms, (torch.cuda.max_memory_allocated(device) - before) / 2**20)
    reset = _reset_cpu_peak()
    before = _proc_status_kb("VmRSS")
    start = time.perf_counter()
    result = fn()
    ms = (time.perf_counter() - start) * 1e3
    return FirstCall(result, ms, (_proc_status_kb("VmHWM") - before) / 1024 if reset else float("nan"))


def extra_peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory ``fn()`` adds above what is live before the call, in MiB."""
    return first_call(fn, device).peak_mb


def measure(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 5) -> Dict[str, float]:
    """Extra peak memory of the first call (before warm-up), then the median time."""
    memory = extra_peak_memory_mb(fn, device)
    return {"median_ms": median_time_ms(fn, device, warmup=max(warmup - 1, 0), repeats=repeats), "peak_mb": memory}
