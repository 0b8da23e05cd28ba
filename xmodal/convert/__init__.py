"""Converters from other frameworks' checkpoints to xmodal.

    python -m xmodal.convert open_clip --weights open_clip_model.safetensors \\
        --config open_clip_config.json --out runs/clip_pretrained

Each converter writes a folder that reads like a trained xmodal stage: ``spec.json`` (the
``model`` node that builds the architecture through ``MODELS``, and the ``data.transform`` that
prepares its inputs) and ``checkpoints/0/state`` (an Orbax checkpoint holding
``params["model"]``, as the trainer saves it). A spec takes its parameters with
``init_from=<folder>``; ``xmodal.core.stages.load_stage(<folder>)`` and
``xmodal.inference.Embedder.from_workdir(<folder>)`` read it directly.

Weights are read only from safetensors files: nothing is ever unpickled.
"""
from xmodal.core.registry import CommandError


class ConvertError(CommandError):
    """A checkpoint or config that cannot be converted; the one-line message names the file,
    tensor or field and says why."""
