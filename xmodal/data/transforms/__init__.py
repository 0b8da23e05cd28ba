"""Transforms: record → training example, named by a spec's ``data.transform``
(registered in ``xmodal.core.registry.TRANSFORMS``).

``data.transform = {"name": "image_text", "image_size": 32, ...}`` names a factory registered
here; the factory takes the spec kwargs and returns a ``grain.transforms.Map`` whose
``map(record)`` gives a dict of fixed-shape numpy arrays (the batch's keys). Optional attributes
the trainer reads:

- ``augment``: a ``grain.transforms.RandomMap`` applied after ``map`` in training only, seeded
  per record (reproducible, resumable);
- ``tokenizer``: the text tokenizer, for evaluators that embed prompts;
- ``label_field``: a ClassLabel feature whose names become ``EvalContext.class_names``.

Generic transforms live here; a system's own transforms live in its project folder.
"""
