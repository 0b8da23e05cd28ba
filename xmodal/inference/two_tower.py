"""Using a trained contrastive model: embed your own images (or audio) and texts, classify
zero-shot. Any stage whose model matches a modality with text (``eval_context.Matcher``:
``modalities`` and ``encode``; ``two_tower`` of the CLIP, SigLIP, CLAP and VSE specs, the
LightCLIP and IRRA ``fusion_two_tower``, M3PT's and same-style's models) works.

    from xmodal.inference import Embedder
    emb = Embedder.from_workdir("runs/clip")              # newest checkpoint, EMA policy
    zi = emb.embed_items(["cat.png", "dog.png"])           # [2, D] unit norm (or audio files)
    zt = emb.embed_texts(["grinning face", "red heart"])   # [2, D]
    zi @ zt.T                                              # cosine similarities
    emb.zeroshot(["cat.png"], ["animals & nature", "food & drink"])   # probabilities [1, 2]

Files are prepared as the training data was: an image is composited on white (transparent
pixels), fitted to the model's square size (shorter side, centre crop, Lanczos); an audio file
is read mono at the tower's sample rate and cut or zero-padded to the training clip length.
Texts are tokenised by the spec's transform. Zero-shot prompts are the spec's ``zeroshot``
evaluator's templates (CLIP's ensemble when it has none), so a picture is classified as the
table was measured.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xmodal.core import checkpoint as ckpt_lib
from xmodal.core import parallel
from xmodal.core import spec as spec_lib
from xmodal.core import stages as stages_lib
from xmodal.core.eval_context import Applier, encode_fn
from xmodal.core.registry import MODELS, TRANSFORMS, CommandError, SpecError
from xmodal.evaluate.zeroshot import PROMPT_TEMPLATES, zeroshot_classifier

# CLIP caps its learned logit scale at 100; a model without one is scored at that scale.
DEFAULT_LOGIT_SCALE = 100.0
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def is_encoder(model: Any) -> bool:
    """A Matcher model or model class (a protocol with a property cannot ``issubclass``)."""
    return callable(getattr(model, "encode", None)) and hasattr(model, "modalities")


def encoder_stages(spec) -> list[str]:
    """Names of the spec's stages whose model is a Matcher ('' = single)."""
    # The model class has the methods; nothing needs building to know.
    return [name for name, stage in spec_lib.stages_of(spec)
            if stage.model.name in MODELS.names() and is_encoder(MODELS.get(stage.model.name))]


def stage_dir(spec, workdir: str, stage: str = "") -> str:
    """The workdir of the spec's encoder stage (``stage``, or the only one there is)."""
    names = encoder_stages(spec)
    if not names:
        raise SpecError("this spec has no stage with a model that matches a modality with "
                        "text (a contrastive two-tower model) to embed with")
    if stage:
        if stage not in names:
            raise CommandError(f"--stage={stage!r} is not an encoder stage of this spec; "
                               f"encoder stages: {', '.join(names)}")
        names = [stage]
    elif len(names) > 1:
        raise CommandError(f"this spec has {len(names)} encoder stages ({', '.join(names)}); "
                           "choose one with --stage=")
    return os.path.join(workdir, names[0]) if names[0] else workdir


@dataclasses.dataclass
class Embedder:
    """A trained encoder stage: its model, parameters, transform and zero-shot settings."""
    stage: stages_lib.Stage
    transform: Any
    templates: tuple[str, ...]
    class_names: tuple[str, ...]
    step: int = 0                # the checkpoint's training step
    batch_size: int = 64
    _applier: Applier | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_workdir(cls, workdir: str, spec=None, stage: str = "",
                     batch_size: int = 64) -> "Embedder":
        """The encoder stage of ``workdir`` (a single-stage run, or a multi-stage run's
        ``stage`` given ``spec``). Raises CommandError if it holds no trained checkpoint."""
        path = stage_dir(spec, workdir, stage) if spec is not None else workdir
        if not os.path.isfile(os.path.join(path, "spec.json")):
            raise CommandError(f"{path!r} holds no trained run (no spec.json): train it first")
        try:
            trained = stages_lib.load_stage(path)
        except SpecError as e:  # no committed checkpoint
            raise CommandError(f"{e}; train the run first")
        if not is_encoder(trained.model):
            raise CommandError(f"{path!r} trained model {trained.spec['model']['name']!r}, which "
                               "matches no modality with text (no encode/modalities)")
        data = trained.spec["data"]
        transform = TRANSFORMS.build(data["transform"]["name"],
                                     **spec_lib.component_kwargs(data["transform"]))
        templates, names = PROMPT_TEMPLATES, ()
        for ev in (trained.spec.get("evals") or {}).values():
            if ev.get("name") == "zeroshot" and ev.get("templates"):
                templates = tuple(ev["templates"])
        label_field = getattr(transform, "label_field", "")
        if label_field:
            names = tuple(dataset_class_names(data["name"], label_field,
                                              data.get("data_dir") or None))
        step = ckpt_lib.find_step_dir(path)[1]
        return cls(trained, transform, tuple(templates), names, step, batch_size)

    # ------------------------------------------------------------------ embeddings
    @property
    def params(self) -> dict:
        return self.stage.params["model"]

    @property
    def logit_scale(self) -> float:
        t = self.params.get("logit_scale")
        return float(np.exp(t)) if t is not None else DEFAULT_LOGIT_SCALE

    @property
    def modality(self) -> str:
        """What the items are: the model's modality matched with text (image, audio)."""
        return self.stage.model.modalities[0]

    @property
    def is_audio(self) -> bool:
        return self.modality == "audio"

    def _apply(self, modality: str, x: np.ndarray) -> np.ndarray:
        """The ``modality`` tower's embeddings of ``x`` in fixed-size chunks over this host's
        devices (the evals' Applier: one compiled shape, the last chunk padded)."""
        if self._applier is None:
            self._applier = Applier(parallel.make_mesh({"data": -1, "fsdp": 1, "model": 1}),
                                    self.batch_size)
        return self._applier(encode_fn(self.stage.model, modality), self.stage.params, x)

    def embed_items(self, items: Sequence[str | np.ndarray]) -> np.ndarray:
        """[N, D] unit-norm embeddings of image (or audio) files or arrays already in the
        model's input form (uint8 [S, S, 3] images, float32 [T] waveforms)."""
        if not len(items):
            raise CommandError("nothing to embed: give at least one image/audio file")
        return self._apply(self.modality, np.stack([self.prepare(x) for x in items]))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            raise CommandError("nothing to embed: give at least one text")
        return self._apply("text", self.transform.tokenizer.encode_batch(list(texts)))

    def prepare(self, item: str | np.ndarray) -> np.ndarray:
        if not isinstance(item, str):
            return np.asarray(item)
        return read_waveform(item, self) if self.is_audio else read_image(item, self)

    # ------------------------------------------------------------------ zero-shot
    def classifier(self, class_names: Sequence[str]) -> np.ndarray:
        """[C, D] prompt-ensembled class embeddings (``xmodal.evaluate.zeroshot``)."""
        if not class_names:
            raise CommandError("no class names: give --classes=a,b,c (the spec's data set has "
                               "no label names)")
        prompts = [t.format(c.lower()) for c in class_names for t in self.templates]
        z = self.embed_texts(prompts).reshape(len(class_names), len(self.templates), -1)
        return np.asarray(zeroshot_classifier(z))

    def zeroshot(self, items: Sequence[str | np.ndarray], class_names: Sequence[str] = ()
                 ) -> tuple[np.ndarray, tuple[str, ...]]:
        """(probabilities [N, C], class names): softmax over the classes of the cosine
        similarity times the model's learned logit scale; the classes default to the spec's
        data set label names."""
        names = tuple(class_names) or self.class_names
        logits = self.logit_scale * self.embed_items(items) @ self.classifier(names).T
        return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1)), names


def dataset_class_names(name: str, label_field: str, data_dir: str | None) -> list[str]:
    """The label names of the training data set (its TFDS ClassLabel), [] if it has none or is
    not prepared here (then --classes must be given)."""
    from xmodal.core import datasets as sources
    try:
        builder = sources.builder_for(name, data_dir)
        if not builder.is_prepared():
            return []
        feature = builder.info.features[label_field]
    except Exception:  # a missing package or data set: no default classes, not an error
        return []
    return list(getattr(feature, "names", []) or [])


def read_image(path: str, emb: Embedder) -> np.ndarray:
    """uint8 [S, S, 3]: alpha composited on white, shorter side fitted, centre crop."""
    from PIL import Image, ImageOps
    if not os.path.isfile(path):
        raise CommandError(f"image file {path!r} does not exist")
    try:
        with Image.open(path) as im:
            rgba = im.convert("RGBA")
    except Exception as e:  # PIL.UnidentifiedImageError, OSError, DecompressionBombError
        raise CommandError(f"cannot read {path!r} as an image ({e})")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    size = emb.transform.image_size
    return np.asarray(ImageOps.fit(rgb, (size, size), Image.Resampling.LANCZOS), np.uint8)


def read_waveform(path: str, emb: Embedder) -> np.ndarray:
    """float32 [T] at the audio tower's sample rate, fitted to the training clip length."""
    from xmodal.audio.files import read_audio
    from xmodal.data.transforms.audio_text import fit
    tower = (emb.stage.spec["model"].get("towers") or {}).get("audio", {})
    # The spec's rate, else the tower's default (a flax field's default is a class attribute).
    rate = tower.get("sample_rate") or getattr(MODELS.get(tower.get("name", "")),
                                               "sample_rate", None)
    if not rate:
        raise CommandError(f"the audio tower {tower.get('name')!r} names no sample_rate to read "
                           f"{path!r} at")
    wave, _ = read_audio(path, int(rate))
    n = emb.transform.num_samples
    return fit(wave.astype(np.float32), n) if n else wave.astype(np.float32)
