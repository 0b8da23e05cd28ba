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


def test_a_line_is_due_every_interval_and_measuring_keeps_the_window(clock):
    m = run_io.Progress(start=0, stop=1000, batch=4, step_flops=0, peak=0)
    clock.now = 2.0
    m.warmed_up(1)
    first = m.rates(1)
    assert first["perf/steps_per_s"] == pytest.approx(0.5)
    line = m.line(1, {"loss": 2.0, **first}, first=True)
    assert "first step 2.0 s" in line and "ETA" not in line
    clock.now = 31.9
    assert not m.due(30.0) and not m.due(0)   # 0: only the logged steps print
    clock.now = 32.0
    assert m.due(30.0)
    r = m.rates(61)                           # 60 steps in 30 s; the window is not reset
    assert r["perf/steps_per_s"] == pytest.approx(2.0)
    assert "ETA 7m49s" in m.line(61, {"loss": 1.0, **r})
    assert not m.due(30.0)                    # a printed line restarts the interval
    clock.now = 62.0
    assert m.update(121)["perf/steps_per_s"] == pytest.approx(2.0)   # the same window


def test_a_cpu_hint_once_when_the_stage_needs_over_an_hour():
    m = run_io.Progress(start=0, stop=10, batch=1, step_flops=0, peak=0)
    assert m.cpu_hint(3599.0, "cpu") == "" and m.cpu_hint(7200.0, "gpu") == ""
    assert m.cpu_hint(float("inf"), "cpu") == ""
    hint = m.cpu_hint(2 * 3600 + 5 * 60, "cpu")
    assert "2h05m" in hint and ":runlocal" in hint
    assert m.cpu_hint(9000.0, "cpu") == ""    # said once
    assert [run_io.duration(s) for s in (9, 724, 11100)] == ["9s", "12m04s", "3h05m"]


def test_the_console_hears_from_a_run_between_its_logged_steps(tmp_path):
    """log_every=1000 on a 3-step run: the first step's line comes at once and, with a tiny
    progress interval, every step has a line; metrics.jsonl keeps only its logged row."""
    import json

    from tests import cli
    r = cli.run("specs/clip.py:runlocal", tmp_path / "run", "--spec.train.steps=3",
                "--spec.train.log_every=1000", "--spec.train.progress_every_s=0.000001")
    lines = [l for l in r.stdout.splitlines() if l.startswith("step ")]
    assert [l.split()[1] for l in lines] == ["1/3", "2/3", "3/3"], r.stdout[-2000:]
    assert "first step" in lines[0] and "steps/s" in lines[1] and "host" in lines[1]
    rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert [row["step"] for row in rows if "train/loss" in row] == [3]


def test_the_run_eta_adds_the_later_stages_at_their_logged_pace(tmp_path):
    import json
    # "done" finished before; "timed" ran 40 of 100 steps at 2 steps/s before (a resume);
    # "fresh" never ran; "eval" logs no pace.
    for name, step, pace in (("done", 50, 5.0), ("timed", 40, 2.0)):
        (tmp_path / name / "checkpoints" / str(step)).mkdir(parents=True)
        (tmp_path / name / "checkpoints" / f"{step + 10}.orbax-checkpoint-tmp-3").mkdir()
        rows = [{"step": 20, "perf/steps_per_s": 1.0}, {"step": step, "perf/steps_per_s": pace}]
        (tmp_path / name / "metrics.jsonl").write_text(
            "\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 4")   # a line cut by a kill
    later = run_io.LaterStages.of([(n, s, str(tmp_path / n)) for n, s in (
        ("done", 50), ("timed", 100), ("fresh", 30), ("eval", 0))])
    assert later.known_s == pytest.approx(60 / 2.0) and later.untimed == ("fresh", "eval")
    assert later.text(90.0) == "  run ETA ≥ 2m00s (+2 stages not yet timed)"
    assert later.text(float("inf")) == ""
    only_timed = run_io.LaterStages.of([("timed", 100, str(tmp_path / "timed"))])
    assert only_timed.text(5.0) == "  run ETA 35s"
    assert run_io.LaterStages.of([("done", 50, str(tmp_path / "done"))]).text(5.0) == ""
