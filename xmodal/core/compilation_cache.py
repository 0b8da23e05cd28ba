"""The persistent XLA compilation cache: a program compiled once is read from disk next time.

Most of a short run on a CPU (a first step, ``--mode=eval``, a resumed run, each stage of a
multi-stage spec) is XLA compiling the same programs as the last run. jax keeps compiled
executables in ``jax_compilation_cache_dir`` when it is set; by default it writes only programs
that took a second or more to compile, which leaves out nearly every CPU program, so the
threshold is lowered to 0.1 s (``$XMODAL_COMPILATION_CACHE_MIN_SECS``): every jitted step,
evaluation and sampler, not the thousands of millisecond programs op-by-op code compiles.

On a CPU split into several devices (``several_cpu_devices``: the tests' 8 fake devices, a
sharded dry run) only one-device programs are cached (``_one_device_programs_only``):
multi-device CPU programs read back from the cache deadlocked in XLA's collectives, and
one-device programs have no collectives. One CPU device, GPUs and TPUs cache every program.

Where: ``--compilation_cache=DIR`` on the command line, else ``$XMODAL_COMPILATION_CACHE``, else
jax's own ``$JAX_COMPILATION_CACHE_DIR``, else ``~/.cache/xmodal/jax``. ``off`` (flag or
variable) turns it off. The cache is keyed by the program, the jax/jaxlib version, the backend
and the devices, so a stale entry is never used for another setting. Writes are jax's default
(unbounded) ones; a process that reads an entry while another is writing it gets a warning and
compiles the program itself. The size is bounded by ``prune`` when a process turns the cache on:
past ``$XMODAL_COMPILATION_CACHE_MAX_BYTES`` (default 4 GiB) the least recently used entries go.
"""
from __future__ import annotations

import collections
import os
import re

DEFAULT_DIR = os.path.join("~", ".cache", "xmodal", "jax")
DEFAULT_MAX_BYTES = 4 << 30   # pruned down to 80 % of it past this (``prune``)
DEFAULT_MIN_SECS = 0.1
OFF = ("off", "0", "false", "none", "no")


def resolve(flag: str = "") -> str | None:
    """The cache directory the flag and environment ask for, or None when it is turned off."""
    choice = flag or os.environ.get("XMODAL_COMPILATION_CACHE", "") or os.environ.get(
        "JAX_COMPILATION_CACHE_DIR", "") or DEFAULT_DIR
    if choice.strip().lower() in OFF:
        return None
    return os.path.abspath(os.path.expanduser(choice))


def several_cpu_devices() -> bool:
    """True when the CPU backend is split into several devices (``XLA_FLAGS=
    --xla_force_host_platform_device_count=N`` or ``jax_num_cpu_devices``, N > 1), read from
    the settings so no backend starts (multi-process runs must initialise jax.distributed
    first). There only one-device programs are cached: multi-device CPU programs read back
    from it deadlocked in XLA's CPU collectives (an all-gather rendezvous timed out after 40 s
    with devices waiting at different ops; three CLI runs aborted in one test run, none when
    compiled afresh)."""
    import jax

    m = re.search(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    forced = int(m.group(1)) if m else 1
    try:
        configured = int(jax.config.jax_num_cpu_devices)
    except (AttributeError, TypeError, ValueError):
        configured = -1
    return forced > 1 or configured > 1


def enable(flag: str = "") -> str | None:
    """Points jax's persistent compilation cache at ``resolve(flag)``; returns the directory
    (None: off). Call before the first compilation: jax reads the setting once."""
    import jax

    directory = resolve(flag)
    if directory is None or (several_cpu_devices() and not _one_device_programs_only()):
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    # jax's default keeps only programs that took 1 s or more to compile, which leaves out most
    # CPU programs, yet a run compiles dozens of them. Not every program by default, though:
    # op-by-op (un-jitted) code compiles thousands of millisecond programs, each written once
    # at a cost; the test suite, which reads them back run after run, keeps them all (0).
    min_secs = float(os.environ.get("XMODAL_COMPILATION_CACHE_MIN_SECS", DEFAULT_MIN_SECS))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_secs)
    # -1 also stops jax raising the size floor for the filesystem.
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    # jax's default write path (no size bound): with a bound jax scans the whole folder, under
    # a lock every other process waits on, at every write (0.2-0.4 s at 1,800 entries; a cold
    # test run writes over a thousand). The bound is kept here instead, once per process.
    jax.config.update("jax_compilation_cache_max_size", -1)
    prune(directory, int(os.environ.get("XMODAL_COMPILATION_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES)))
    _listen()
    return directory


def prune(directory: str, max_bytes: int) -> int:
    """Deletes the least recently used entries while the folder's entries exceed
    ``max_bytes``, down to 80 % of it (so not every start prunes); returns the bytes freed.
    "Used" is the later of the file's access and modification times, as the filesystem keeps
    them (with Linux's default ``relatime``, a read is recorded at least once a day). Entries
    are ``<key>-cache`` files; an ``<key>-atime`` file a bounded jax cache left goes with its
    entry. A lock keeps two starting processes from pruning at once."""
    from filelock import FileLock

    with FileLock(os.path.join(directory, ".xmodal-prune.lock")):
        entries = []
        for name in os.listdir(directory):
            if name.endswith("-cache"):
                try:
                    st = os.stat(os.path.join(directory, name))
                except FileNotFoundError:      # removed by another process meanwhile
                    continue
                entries.append((max(st.st_atime, st.st_mtime), name, st.st_size))
        total = sum(size for _, _, size in entries)
        if total <= max_bytes:
            return 0
        freed, target = 0, int(0.8 * max_bytes)
        for _, name, size in sorted(entries):
            if total - freed <= target:
                break
            for path in (name, name[: -len("-cache")] + "-atime"):
                try:
                    os.remove(os.path.join(directory, path))
                except FileNotFoundError:
                    pass
            freed += size
        return freed


def for_one_call() -> dict:
    """XLA options for a program that runs once per process (the train state's
    initialisation): on a CPU, LLVM at optimisation level 0 without its expensive passes
    compiles it in about half the time (the tiny CLIP's init 4.2 s -> 2.0 s on the 2-core CPU)
    and one call of the slower code costs milliseconds. Its numbers differ from level 2's only
    in rounding (a parameter's last bit), the same on every run. GPUs and TPUs keep their
    defaults."""
    import jax
    if jax.default_backend() != "cpu":
        return {}
    return {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _one_device_programs_only() -> bool:
    """Keeps multi-device programs out of the cache, for a CPU split into several devices.

    jax has no setting for this (whether the cache is used is decided once per process), so
    its one compile entry point, ``compiler.compile_or_get_cached`` (which ``pxla`` looks up on
    the module at every compile), is wrapped: a program placed on more than one device goes
    straight to ``backend_compile_and_load``, as jax itself does when it has no cache key.
    Returns False, and the caller turns the whole cache off, when this jax lacks either."""
    from jax._src import compiler

    original = getattr(compiler, "compile_or_get_cached", None)
    compile_and_load = getattr(compiler, "backend_compile_and_load", None)
    if original is None or compile_and_load is None:
        return False
    if getattr(original, "one_device_only", False):
        return True

    def compile_or_get_cached(backend, computation, devices, compile_options, host_callbacks,
                              executable_devices, *args, **kwargs):
        if getattr(devices, "size", 1) > 1:
            return compile_and_load(backend, computation, executable_devices, compile_options,
                                    host_callbacks)
        return original(backend, computation, devices, compile_options, host_callbacks,
                        executable_devices, *args, **kwargs)

    compile_or_get_cached.one_device_only = True
    compiler.compile_or_get_cached = compile_or_get_cached
    return True


# What the cache did in this process: jax's monitoring events, counted.
_COUNTS: collections.Counter = collections.Counter()
_EVENTS = {"/jax/compilation_cache/cache_hits": "hits",
           "/jax/compilation_cache/cache_misses": "compiled"}
_SAVED = "/jax/compilation_cache/compile_time_saved_sec"
_listening = False


def _listen() -> None:
    global _listening
    if _listening:
        return
    import jax

    def event(name: str, **_) -> None:
        if name in _EVENTS:
            _COUNTS[_EVENTS[name]] += 1

    def duration(name: str, seconds: float, **_) -> None:
        if name == _SAVED:
            _COUNTS["saved_s"] += seconds

    jax.monitoring.register_event_listener(event)
    jax.monitoring.register_event_duration_secs_listener(duration)
    _listening = True


def summary() -> str:
    """One line on what the cache did in this process, e.g. for the end of a run."""
    # jax's saving per read is the program's compile time minus the read's: a read of a tiny
    # program can cost more than compiling it, so the sum can be negative (or -0.3: "-0 s").
    saved = round(_COUNTS["saved_s"])
    effect = (f"~{saved} s of compiling saved" if saved >= 0
              else f"reading cost ~{-saved} s more than compiling")
    return (f"compilation cache: {_COUNTS['hits']} programs read ({effect}), "
            f"{_COUNTS['compiled']} compiled")
