"""Commands beyond train/eval that use a trained workdir: ``--mode=<name>`` of ``xmodal.main``.

A command is registered as ``fn(spec, workdir, *, input, query, out)``; bad user input raises
``CommandError`` (printed as one line, exit 1) and writes nothing. Every module in this package
is imported, so adding a command is adding a file.
"""
from xmodal.registry import Registry, import_all

COMMANDS = Registry("mode")


class CommandError(ValueError):
    """The user's input to a command cannot be used; the message says why and what to do."""


import_all(__name__, __path__)
