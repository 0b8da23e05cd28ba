"""Command line: ``python -m xmodal.main --spec=specs/clip.py:runlocal --workdir=runs/clip``.

``--spec`` takes ``path[:arg]`` (the arg goes to the spec's ``get_config``) and overrides such as
``--spec.train.steps=10``. ``--mode=train`` trains (resuming if the workdir has a checkpoint);
``--mode=eval`` evaluates the workdir's newest checkpoint; ``--mode=compile --target=v5e:4x4``
compiles the train step for a TPU slice ahead of time and reports its memory per chip
(``xmodal.core.compile``). Other modes are commands a library or project
registers (``xmodal.core.registry.COMMANDS``); each parses its own flags, which follow the
generic ones (``--input=... --query=... --out=...``):

  --mode=embed      embed files or strings with a trained two-tower workdir (``--out``: .npz)
  --mode=zeroshot   classify images or clips against class names
  --mode=sample     samples from a trained flow or distilled student (``--stage``,
                    ``--prompt``, ``--out``)
  --mode=separate   FlowSep: separate a WAV by a text query (``--input``, ``--query``,
                    ``--out``)
  --mode=caption    AAC→ATR: caption audio files with a trained captioner (``--audio``,
                    ``--samples``, ``--out``)

Exit status: 0 done (a SIGTERM that saved a checkpoint included); 2 the command line or the
spec is wrong (an unknown key or mode, a value out of range or of the wrong type, a bad flag
of a mode, a stage it needs not trained); 1 the run failed (data missing or damaged, a
non-finite loss, a workdir in use by another run, no checkpoint in it that restores).
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags import config_flags as config_flags_lib

from xmodal.core import spec as spec_lib
from xmodal.core.registry import SpecError

_SPEC = config_flags.DEFINE_config_file("spec", None, "spec file, path[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, metrics and spec.json go")
_MODE = flags.DEFINE_string("mode", "train", "train | eval | a project's command (e.g. separate)")
_UNTIL = flags.DEFINE_integer(
    "until_step", 0, "stop this invocation after this step (checkpointed) even if train.steps "
    "is larger; the schedule still follows train.steps. 0 = run to the end")
_STAGES = flags.DEFINE_list(
    "stages", [], "run only these stages of a multi-stage spec (in the spec's order); the "
    "others must be done already where a run stage reads them ('stage:<name>')")
_TARGET = flags.DEFINE_string(
    "target", "", "--mode=compile: the TPU topology to compile for, e.g. v5e:4x4, v5p:2x2x2")
_CACHE = flags.DEFINE_string(
    "compilation_cache", "", "where compiled XLA programs are kept for the next run: a folder, "
    "or 'off'; default $XMODAL_COMPILATION_CACHE, else ~/.cache/xmodal/jax "
    "(xmodal.core.compilation_cache)")
flags.mark_flags_as_required(["spec", "workdir"])

GENERIC_MODES = ("train", "eval", "compile")


def usage_error(message: str) -> None:
    """Exit 2 with one line: the command line or the spec is wrong (module docstring)."""
    sys.stderr.write(message + "\n")
    sys.exit(2)


def main(argv):
    # The console shows what runs, progress, evals and the final table; libraries' INFO lines
    # (orbax per checkpoint, backend probing, TFDS) go to the workdir's run.log
    # (run_io.log_to_workdir), and to the console only with an explicit --verbosity=0.
    if not flags.FLAGS["verbosity"].present:
        # (absl's own WARNING is its verbosity -1; a handler takes Python's level)
        logging.get_absl_handler().setLevel(logging.converter.STANDARD_WARNING)
    # argv[1:] are the flags absl did not know: they belong to the mode's command.
    command_args = argv[1:]
    if _MODE.value in GENERIC_MODES and command_args:
        usage_error(f"unknown flag(s) for --mode={_MODE.value}: {' '.join(command_args)}")
    if _MODE.value not in GENERIC_MODES:
        from xmodal.core.registry import COMMANDS
        if _MODE.value not in COMMANDS.names():
            usage_error(f"unknown --mode={_MODE.value!r}; valid: {', '.join(GENERIC_MODES)}, "
                        f"{', '.join(COMMANDS.names())}")
    try:
        spec = spec_lib.validate(_SPEC.value)
    except SpecError as e:
        usage_error(f"spec error: {e}")
    import jax
    jax.config.update("jax_threefry_partitionable", True)
    from xmodal.core import compilation_cache
    # A program compiled for a TPU topology with no TPU here cannot be read back from the
    # cache (no client to load it into): --mode=compile leaves the cache alone.
    cache_dir = compilation_cache.enable("off" if _MODE.value == "compile" else _CACHE.value)
    from xmodal.core import run_io, trainer  # after flags: grain workers need parsed absl flags
    from xmodal.core.datasets import DataDamaged, DataSourceMissing
    from xmodal.core.registry import COMMANDS, CommandError, RunStateError
    try:
        if _MODE.value == "compile":
            from xmodal.core import compile as compile_lib
            if not _TARGET.value:
                raise SpecError("--mode=compile needs --target=<TPU topology>, e.g. v5e:4x4")
            os.makedirs(_WORKDIR.value, exist_ok=True)
            out = os.path.join(_WORKDIR.value, f"compile_{_TARGET.value.replace(':', '_')}.json")
            compile_lib.run(spec, _WORKDIR.value, _TARGET.value, only=tuple(_STAGES.value),
                            out=out)
            print(f"report: {out}", flush=True)
        elif _MODE.value in GENERIC_MODES:
            trainer.run(spec, _WORKDIR.value, mode=_MODE.value, until_step=_UNTIL.value,
                        only=tuple(_STAGES.value))
        else:
            COMMANDS.get(_MODE.value)(spec, _WORKDIR.value, command_args)
    except RunStateError as e:
        sys.exit(f"error: {e}")
    except SpecError as e:
        usage_error(f"spec error: {e}")
    except CommandError as e:
        usage_error(f"error: {e}")
    except DataSourceMissing as e:
        sys.exit(f"data source missing: {e}")
    except DataDamaged as e:
        sys.exit(f"data damaged: {e}")
    except run_io.Preempted as e:
        print(e, flush=True)  # a clean stop: exit 0, no later stage started
    except run_io.NonFiniteError as e:
        logging.error("%s", e)
        sys.exit(f"stopped: {e}")
    if cache_dir:
        print(f"{compilation_cache.summary()} ({cache_dir})", flush=True)


def parse_flags(argv: list[str]) -> list[str]:
    """absl parsing that leaves unknown ``--flags`` to the mode's command. A bad ``--spec``
    override (unknown key, wrong type) is one line naming it, exit 2, nothing written."""
    try:
        return flags.FLAGS(argv, known_only=True)
    except SystemExit:
        # absl prints --help / --helpfull and exits 1; asking for help is not a failure.
        if any(a.split("=")[0] in ("--help", "-?", "--helpshort", "--helpfull")
               for a in argv[1:]):
            sys.exit(0)
        raise
    except flags.IllegalFlagValueError as e:
        # absl's text already names the flag, the value and why ("invalid literal for int()").
        sys.stderr.write(f"spec error: {str(e).splitlines()[0]}\n")
    except (AttributeError, KeyError) as e:  # an override path the spec does not have
        sys.stderr.write(f"spec error: {unknown_override(argv) or e}\n")
    except config_flags_lib.UnsupportedOperationError as e:  # a list-valued key (sharding.rules)
        sys.stderr.write(f"spec error: {str(e).split('. ')[0]}; set it in the spec file or "
                         "through a spec argument\n")
    sys.exit(2)


def unknown_override(argv: list[str]) -> str:
    """'--spec.train.stepz: train has no key stepz; its keys: ...' for the first override
    whose path the spec (loaded without overrides) does not have."""
    spec_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--spec=")), None)
    if spec_arg is None:
        return ""
    try:
        spec = spec_lib.load(spec_arg)
    except Exception:  # the spec file itself is broken: absl reports that on its own
        return ""
    for arg in argv:
        if not arg.startswith("--spec.") or "=" not in arg:
            continue
        path = arg[len("--spec."):].split("=", 1)[0].split(".")
        node, where = spec, "the spec"
        for key in path:
            keys = sorted(node.keys()) if hasattr(node, "keys") else []
            if key not in keys:
                return (f"--spec.{'.'.join(path)}: {where} has no key {key!r}; "
                        f"its keys: {', '.join(keys) or '(none: it is a value)'}")
            node, where = node[key], key
    return ""


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
