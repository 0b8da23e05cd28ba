"""Transforms: record → training example, named by a spec's ``data.transform``.

``data.transform = {"name": "image_text", "image_size": 32, ...}`` names a factory registered
here; the factory takes the spec kwargs and returns a ``grain.transforms.Map`` whose
``map(record)`` gives a dict of fixed-shape numpy arrays (the batch's keys). Optional attributes
the trainer reads:

- ``augment``: a ``grain.transforms.RandomMap`` applied after ``map`` in training only, seeded
  per record (reproducible, resumable);
- ``tokenizer``: the text tokenizer, for evaluators that embed prompts;
- ``label_field``: a ClassLabel feature whose names become ``EvalContext.class_names``.

Every module in this package is imported, so adding a transform is adding a file.
"""
from xmodal.registry import Registry, import_all

TRANSFORMS = Registry("transform")

import_all(__name__, __path__)
