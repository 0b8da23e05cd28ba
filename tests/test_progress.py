"""The progress meter: rates between reports, evals and the slow first step left out."""
import pytest

from xmodal.core import run_io


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(run_io.time, "perf_counter", c)
    return c


def test_first_step_is_timed_apart_from_the_rate_and_eta(clock):
    m = run_io.Progress(start=0, stop=101, batch=8, step_flops=1e9, peak=1e10)
    clock.now = 30.0          # the first step waited 30 s for the input pipeline
    m.warmed_up(1)
    first = m.update(1)       # a report right after it: its own rate, no ETA yet
    assert first["perf/steps_per_s"] == pytest.approx(1 / 30)
    assert first["perf/eta_s"] == float("inf") and "ETA ?" in m.line(1, {"loss": 1.0, **first})
    clock.now = 40.0          # 50 steps in 10 s
    r = m.update(51)
    assert r["perf/steps_per_s"] == pytest.approx(5.0)
    assert r["perf/examples_per_s"] == pytest.approx(40.0)
    assert r["perf/eta_s"] == pytest.approx(50 / 5.0)   # not dragged by the 30 s first step
    assert r["perf/mfu"] == pytest.approx(100 * 5.0 * 1e9 / 1e10)


def test_eval_time_is_not_training_time(clock):
    m = run_io.Progress(start=10, stop=30, batch=1, step_flops=0, peak=0)
    clock.now = 1.0
    m.warmed_up(11)
    clock.now = 2.0
    m.update(20)              # 9 steps in 1 s
    clock.now = 100.0         # an eval took 98 s
    m.pause()
    clock.now = 102.0
    r = m.update(30)
    assert r["perf/steps_per_s"] == pytest.approx(5.0) and r["perf/eta_s"] == 0
    assert "perf/mfu" not in r
