"""lite_detr_plugin.benchmarks.timing: the helper every benchmark measures with."""
import torch

from lite_detr_plugin.benchmarks.timing import elapsed_ms, first_call, measure, median_time_ms, times_ms

CPU = torch.device("cpu")


class Counter:
    def __init__(self, result=None):
        self.calls, self.result = 0, result

    def __call__(self):
        self.calls += 1
        return self.result


def test_times_calls_warmup_then_repeats():
    fn = Counter()
    times = times_ms(fn, CPU, warmup=2, repeats=3)
    assert fn.calls == 5 and len(times) == 3 and all(t >= 0 for t in times)
    fn = Counter()
    median_time_ms(fn, CPU, warmup=0, repeats=4)
    assert fn.calls == 4


def test_elapsed_ms_measures_wall_time():
    import time

    assert 18 <= elapsed_ms(lambda: time.sleep(0.02), CPU) < 2000


def test_first_call_returns_the_result_and_measures_once():
    fn = Counter(result="out")
    first = first_call(fn, CPU)
    assert fn.calls == 1 and first.result == "out" and first.ms >= 0


def test_measure_returns_time_and_memory():
    fn = Counter()
    result = measure(fn, CPU, warmup=2, repeats=3)
    assert set(result) == {"median_ms", "peak_mb"} and fn.calls == 1 + 1 + 3  # memory call doubles as warm-up
