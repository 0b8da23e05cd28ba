"""Command line: ``python -m xmodal.main --spec=specs/clip.py:runlocal --workdir=runs/clip``.

``--spec`` takes ``path[:arg]`` (the arg goes to the spec's ``get_config``) and overrides such as
``--spec.train.steps=10``. ``--mode=train`` trains (resuming if the workdir has a checkpoint);
``--mode=eval`` evaluates the workdir's newest checkpoint. Other modes (``--mode=separate``
for a source-separation spec) are commands registered in ``xmodal.commands``; they read
``--input``, ``--query`` and ``--out``.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from xmodal import spec as spec_lib
from xmodal.registry import SpecError

_SPEC = config_flags.DEFINE_config_file("spec", None, "spec file, path[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, metrics and spec.json go")
_MODE = flags.DEFINE_string("mode", "train", "train | eval | a command of xmodal.commands "
                            "(e.g. separate)")
_INPUT = flags.DEFINE_string("input", "", "command input file (e.g. the mixture to separate)")
_QUERY = flags.DEFINE_string("query", "", "command text query (e.g. 'the violin')")
_OUT = flags.DEFINE_string("out", "", "command output file")
_UNTIL = flags.DEFINE_integer(
    "until_step", 0, "stop this invocation after this step (checkpointed) even if train.steps "
    "is larger; the schedule still follows train.steps. 0 = run to the end")
_STAGES = flags.DEFINE_list(
    "stages", [], "run only these stages of a multi-stage spec (in the spec's order); the "
    "others must be done already where a run stage reads them ('stage:<name>')")
flags.mark_flags_as_required(["spec", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _MODE.value not in ("train", "eval"):
        from xmodal.commands import COMMANDS
        if _MODE.value not in COMMANDS.names():
            sys.exit(f"unknown --mode={_MODE.value!r}; valid: train, eval, "
                     f"{', '.join(COMMANDS.names())}")
    try:
        spec = spec_lib.validate(_SPEC.value)
    except SpecError as e:
        sys.exit(f"spec error: {e}")
    import jax
    jax.config.update("jax_threefry_partitionable", True)
    from xmodal import trainer  # after flags: grain workers need parsed absl flags
    from xmodal.commands import CommandError
    from xmodal.data.sources import DataSourceMissing
    try:
        if _MODE.value in ("train", "eval"):
            trainer.run(spec, _WORKDIR.value, mode=_MODE.value, until_step=_UNTIL.value,
                        only=tuple(_STAGES.value))
        else:
            from xmodal.commands import COMMANDS
            COMMANDS.get(_MODE.value)(spec, _WORKDIR.value, input=_INPUT.value,
                                      query=_QUERY.value, out=_OUT.value)
    except SpecError as e:
        sys.exit(f"spec error: {e}")
    except CommandError as e:
        sys.exit(f"error: {e}")
    except DataSourceMissing as e:
        sys.exit(f"data source missing: {e}")
    except trainer.NonFiniteError as e:
        logging.error("%s", e)
        sys.exit(f"stopped: {e}")


if __name__ == "__main__":
    app.run(main)
