"""What a run shows and guards on the host: progress line, final table, NaN stop, SIGTERM, workdir."""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import signal
import socket
import time
from typing import Iterator, Mapping

import jax
import numpy as np

from xmodal.core.checkpoint import committed_steps
from xmodal.core.registry import RunStateError, SpecError

FINITE = "all_finite"  # metrics key of the step's NaN/Inf flag (set by step.py); not logged


class NonFiniteError(FloatingPointError):
    """Training produced NaN/Inf; the message names the step and the metric."""


def check_writable(workdir: str) -> None:
    """Fails before anything is computed if the workdir cannot be written."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write-probe-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise RunStateError(f"workdir {workdir!r} is not writable ({e.strerror}); choose another "
                            f"--workdir or fix its permissions") from e


class WorkdirLock:
    """One run per workdir: an exclusive ``flock`` on ``<workdir>/.lock`` (``.lock.process_<i>``
    for the other processes of a multi-host run), held until the run ends. The kernel drops it
    when its process dies, ``kill -9`` included, so a lock is never stale; the file keeps the
    owner's host, pid and start time, which a refused second run names."""

    def __init__(self, workdir: str, process_index: int = 0):
        name = ".lock" if process_index == 0 else f".lock.process_{process_index}"
        self.path = os.path.join(workdir, name)
        self.fd = -1

    def __enter__(self) -> "WorkdirLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            try:
                o = json.loads(owner)
                who = f"pid {o['pid']} on host {o['host']} since {o['started']}"
            except (ValueError, KeyError, TypeError):
                who = "another run"
            raise RunStateError(f"workdir {os.path.dirname(self.path)} is in use by {who}: one "
                                "run per workdir (a second would overwrite its checkpoints); "
                                "wait for it to end or choose another --workdir") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)   # releases the flock
            self.fd = -1


def truncate_metrics(workdir: str, step: int) -> None:
    """On resume from ``step``, drops rows written after it by the interrupted run.

    The interrupted run may have logged steps past its last checkpoint; those steps are re-run,
    so keeping both copies would make ``metrics.jsonl`` disagree with the parameters.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [line for line in f if line.strip()]
    keep = [r for r in rows if json.loads(r).get("step", 0) <= step]
    if len(keep) != len(rows):
        with open(path + ".tmp", "w") as f:
            f.writelines(keep)
        os.replace(path + ".tmp", path)


def check_finite(step: int, metrics: Mapping, enabled: bool = True) -> None:
    """Raises NonFiniteError naming the step and the first non-finite metric.

    Reads only the step's fused ``all_finite`` flag unless it is false.
    """
    if not enabled:
        return
    if FINITE in metrics and bool(jax.device_get(metrics[FINITE])):
        return
    host = jax.device_get({k: v for k, v in metrics.items() if k != FINITE})
    for name in sorted(host):
        value = np.asarray(host[name])
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise NonFiniteError(f"step {step}: {name} = {value} is not finite; the last good "
                                 f"checkpoint is the newest one under checkpoints/ (lower the "
                                 f"learning rate or check the data)")


class Preempted(Exception):
    """SIGTERM arrived and the state was saved: the whole invocation (every later stage too)
    ends with exit 0, and the same command resumes in this stage."""


class SigtermFlag:
    """SIGTERM sets a flag; the loop saves a checkpoint at the end of the step and exits 0."""

    def __init__(self):
        self.flag = False
        self._old = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, *_):
        self.flag = True

    def any_process(self) -> bool:
        if jax.process_count() == 1:
            return self.flag
        from jax.experimental import multihost_utils
        # All processes must agree to stop at the same step, or the save deadlocks.
        return bool(np.any(multihost_utils.process_allgather(np.array(self.flag))))

    def restore(self):
        signal.signal(signal.SIGTERM, self._old)


class Progress:
    """steps/s, examples/s, ETA and MFU over the steps since the last report (evals excluded).

    The first step is timed apart (``warmed_up``): it waits for the input pipeline to start
    (grain workers, the first batches) and would make the first ETA a guess from one slow step.
    Between the reports ``log_every`` asks for, ``due`` says when the console should still
    hear from the run (every ``progress_every_s`` of wall time), and ``rates`` measures without
    starting a new window, so those lines leave the logged numbers as they were.
    """

    def __init__(self, start: int, stop: int, batch: int, step_flops: float, peak: float,
                 clock=None, later: LaterStages | None = None):
        self.stop, self.batch, self.step_flops, self.peak = stop, batch, step_flops, peak
        self.clock = clock or (lambda: time.perf_counter())
        self.t0, self.s0 = self.clock(), start
        self._last = start
        self._printed = self.t0
        self.first_step_s = 0.0
        self.hinted = False
        self.later = later or LaterStages()   # the invocation's later stages (run ETA)

    def pause(self):
        # Called after an eval, so its time does not count as training time.
        self.t0, self.s0 = self.clock(), self._last

    def warmed_up(self, step: int) -> None:
        """The first step of this run has finished: rates are measured from here on."""
        now = self.clock()
        self.first_step_s = now - self.t0
        self.t0, self.s0, self._last = now, step, step

    def rates(self, step: int) -> dict:
        """The rates since the last ``update`` (or the first step's alone, right after it)."""
        now = self.clock()
        if step == self.s0:   # a report right after the first step: only it was measured
            sps = 1.0 / max(self.first_step_s, 1e-9)
            eta = 0.0 if step >= self.stop else float("inf")
        else:
            sps = (step - self.s0) / max(now - self.t0, 1e-9)
            eta = (self.stop - step) / sps if sps > 0 else float("inf")
        out = {"perf/steps_per_s": sps, "perf/examples_per_s": sps * self.batch,
               "perf/eta_s": eta}
        if self.step_flops and self.peak:
            out["perf/mfu"] = 100.0 * sps * self.step_flops / self.peak
        return out

    def update(self, step: int) -> dict:
        out = self.rates(step)
        self.t0, self.s0, self._last = self.clock(), step, step
        return out

    def due(self, every_s: float) -> bool:
        """Whether ``every_s`` seconds of wall time have passed since the last printed line."""
        return every_s > 0 and self.clock() - self._printed >= every_s

    def line(self, step: int, m: Mapping, first: bool = False) -> str:
        """The console's progress line; ``first``: the run's first step, whose time (the
        input pipeline's start included) stands in for the rate and the ETA."""
        self._printed = self.clock()
        eta = m.get("perf/eta_s", float("nan"))
        eta_s = duration(eta) if math.isfinite(eta) else "?"
        loss = next((v for k, v in m.items() if k.endswith("loss")), float("nan"))
        mfu = m.get("perf/mfu")
        if first:
            pace = f"first step {self.first_step_s:.1f} s (the input pipeline's start included)"
        else:
            pace = (f"{m['perf/steps_per_s']:.2f} steps/s  {m['perf/examples_per_s']:.0f} ex/s"
                    f"  ETA {eta_s}" + self.later.text(eta) +
                    (f"  MFU {mfu:.1f}%" if mfu is not None else ""))
        return f"step {step:>6}/{self.stop}  loss {loss:.4f}  {pace}" + memory()

    def cpu_hint(self, eta_s: float, backend: str) -> str:
        """Once per run: a line when this stage would take over an hour on a CPU."""
        if self.hinted or backend != "cpu" or not math.isfinite(eta_s) or eta_s < 3600:
            return ""
        self.hinted = True
        return (f"hint: at this pace the stage needs {duration(eta_s)} more on this CPU; a "
                "spec's ':runlocal' argument is its CPU size (e.g. --spec=specs/clip.py:runlocal)")


@contextlib.contextmanager
def log_to_workdir(workdir: str, process: int = 0) -> Iterator[str]:
    """Every library's log records (INFO and up: orbax's checkpoint steps, grain, TFDS, JAX's
    backend probing) appended to ``workdir/run.log`` (``run.process<i>.log`` on the other
    processes) while the run lasts, with their time and source; the console keeps only
    warnings. Yields the file's path."""
    import logging
    name = "run.log" if process == 0 else f"run.process{process}.log"
    path = os.path.join(workdir, name)
    os.makedirs(workdir, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(filename)s:%(lineno)d] %(message)s"))
    root = logging.getLogger()
    level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)   # records below the root's level never reach a handler
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


class LaterStages:
    """What the stages after this one in the same invocation still need, for the run's ETA.

    A later stage that trained before in this workdir (a resumed or rerun pipeline) has its
    last logged pace in its ``metrics.jsonl``: its remaining steps at that pace are counted.
    A stage never timed here (or an eval-only stage, which logs no pace) is only counted: the
    run's ETA is then a lower bound, and says how many stages it leaves out.
    """

    def __init__(self, known_s: float = 0.0, untimed: tuple[str, ...] = ()):
        self.known_s, self.untimed = float(known_s), tuple(untimed)

    @classmethod
    def of(cls, stages: list[tuple[str, int, str]]) -> "LaterStages":
        """``stages``: (name, train steps, stage workdir) of each later stage."""
        known, untimed = 0.0, []
        for name, steps, stage_dir in stages:
            if steps == 0:                    # an eval-only stage: it runs every time
                untimed.append(name)
                continue
            left = steps - max(committed_steps(os.path.join(stage_dir, "checkpoints")),
                               default=0)
            if left <= 0:
                continue                      # finished: restored, it trains nothing
            pace = logged_pace(stage_dir)
            if pace:
                known += left / pace
            else:
                untimed.append(name)
        return cls(known, tuple(untimed))

    def __bool__(self) -> bool:
        return bool(self.known_s or self.untimed)

    def text(self, stage_eta_s: float) -> str:
        """``  run ETA 12m04s`` or ``  run ETA ≥ 3m10s (+2 stages not yet timed)``; '' when no
        later stage has anything to do or this stage's ETA is unknown."""
        if not self or not math.isfinite(stage_eta_s):
            return ""
        total = duration(stage_eta_s + self.known_s)
        if not self.untimed:
            return f"  run ETA {total}"
        n = len(self.untimed)
        return f"  run ETA ≥ {total} (+{n} stage{'s' if n > 1 else ''} not yet timed)"


def logged_pace(stage_dir: str) -> float | None:
    """The last ``perf/steps_per_s`` in ``stage_dir/metrics.jsonl`` (None if none)."""
    path = os.path.join(stage_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return None
    pace = None
    with open(path) as f:
        for line in f:
            try:
                value = json.loads(line).get("perf/steps_per_s")
            except ValueError:
                continue                      # a line cut by a kill: the others still count
            if isinstance(value, (int, float)) and value > 0:
                pace = float(value)
    return pace


def duration(seconds: float) -> str:
    """``3h05m``, ``12m04s``, ``9s``."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def memory() -> str:
    """``  host 1.2 GB`` (this process's resident memory), and ``  device 3.4 GB`` where the
    backend reports it (GPUs and TPUs: bytes in use on the first local device)."""
    out = ""
    try:
        with open("/proc/self/statm") as f:
            out += f"  host {int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e9:.1f} GB"
    except (OSError, ValueError, IndexError):
        pass
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_in_use" in stats:
        out += f"  device {stats['bytes_in_use'] / 1e9:.1f} GB"
    return out


def print_table(metrics: Mapping[str, float], title: str,
                chance: Mapping[str, float] | None = None) -> None:
    """The metrics, sorted, with a ``chance`` column (what a random ranking or guess scores,
    from the evaluators that know it) when any metric has one."""
    if jax.process_index() != 0 or not metrics:
        return
    chance = {k: v for k, v in (chance or {}).items() if k in metrics}
    width = max(len(k) for k in metrics)
    rule = "-" * (width + 12 + (11 if chance else 0))
    print(f"\n{title}")
    if chance:
        print(f"{'':<{width}}  {'value':>9}  {'chance':>9}")
    print(rule)
    for k in sorted(metrics):
        extra = f"  {chance[k]:>9.3f}" if k in chance else ""
        print(f"{k:<{width}}  {metrics[k]:>9.3f}{extra}")
    print(rule, flush=True)
