"""Two-tower model matching one modality (images, audio...) with text (CLIP: Radford et al.,
2021; SigLIP: Zhai et al., "Sigmoid Loss for Language Image Pre-Training", 2023).

Each tower's pooled output goes through a bias-free linear head (``img_head``, ``txt_head``) to
``embed_dim`` and is L2-normalised in f32: ``z = h / max(||h||, 1e-6)``. The model also owns the
loss's learned temperature and bias, returned with the embeddings:

- ``logit_scale = exp(t)`` with ``t`` a scalar parameter initialised to ``temperature_init``.
  CLIP uses ``t = log(1 / 0.07)``; SigLIP uses ``t = log(10)``.
- ``logit_bias = b``, a scalar parameter initialised to ``bias_init``, created only when
  ``bias_init`` is not None. SigLIP uses ``b = -10`` so the initial sigmoid loss is not swamped
  by the many negative pairs; CLIP's softmax loss is invariant to a bias and has none.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.precision import dot_general_for
from xmodal.core.registry import SpecError

# Set on the tower by TwoTower itself, so the two towers cannot disagree with the model.
_PASSED_DOWN = ("dtype", "param_dtype")


def l2_normalise(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def build_tower(spec: Mapping[str, Any], where: str, dtype: Any, param_dtype: Any,
                name: str) -> nn.Module:
    """``{"name": "vit", **kwargs}`` -> the registered module, kwargs checked first."""
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise SpecError(f"{where} must be a mapping with a 'name' key (one of "
                        f"{', '.join(MODELS.names())}) and that model's arguments, got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    fixed = sorted(set(kwargs) & set(_PASSED_DOWN))
    if fixed:
        raise SpecError(f"{where} sets {', '.join(fixed)}; set it on the two_tower model, which "
                        "passes it to both towers")
    MODELS.check_kwargs(spec["name"], kwargs, where=where)
    return MODELS.get(spec["name"])(**kwargs, dtype=dtype, param_dtype=param_dtype, name=name)


# Parameter names of the towers: the image and text towers keep the short names the model has
# always had (so a seed initialises the same parameters, and converted checkpoints load);
# any other modality's tower is named after the modality.
PARAM_NAMES = {"image": "img", "text": "txt"}


def param_name(modality: str) -> str:
    return PARAM_NAMES.get(modality, modality)


class ImageTextEncoding:
    """For image-text models with ``encode_image`` / ``encode_text``: the ``modalities`` and
    ``encode(x, modality)`` that embedding evaluators and the Embedder call
    (``eval_context.Matcher``)."""

    @property
    def modalities(self) -> tuple[str, str]:
        return "image", "text"

    def encode(self, x: jax.Array, modality: str, train: bool = False) -> jax.Array:
        if modality not in ("image", "text"):
            raise SpecError(f"{type(self).__name__} has no {modality!r} tower; its towers: "
                            "image, text")
        return getattr(self, f"encode_{modality}")(x, train=train)


def paired_inputs(model, batch: Mapping[str, Any]) -> tuple:
    """The batch fields a two-tower model reads, in its order: ``model.modalities``."""
    missing = [m for m in model.modalities if m not in batch]
    if missing:
        raise SpecError(f"{type(model).__name__} towers {list(model.modalities)} read batch "
                        f"fields {missing}, which the transform does not make; batch fields: "
                        f"{', '.join(sorted(batch))}")
    return tuple(batch[m] for m in model.modalities)


@MODELS.register("two_tower")
class TwoTower(nn.Module):
    """``(x, text) -> (zx [B, embed_dim], ztxt [B, embed_dim], {"logit_scale",
    "logit_bias"})``, embeddings unit-norm f32.

    ``towers`` names the two modalities and their tower specs: ``text`` and one other, e.g.
    ``{"image": {"name": "vit", ...}, "text": {"name": "text_transformer", ...}}`` or
    ``{"audio": {"name": "audio_encoder", ...}, "text": ...}``. A modality's name is its batch
    field (the transform's output key) and what evaluators encode (``encode(x, modality)``).
    ``modalities`` is (the other, "text") whatever the mapping's order (a spec read back from
    JSON has sorted keys). ``dtype`` (compute) and ``param_dtype`` are passed to both towers.
    """
    towers: Mapping[str, Mapping[str, Any]]
    embed_dim: int = 256
    temperature_init: float = math.log(10.0)
    bias_init: float | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def modalities(self) -> tuple[str, str]:
        if not isinstance(self.towers, Mapping) or len(self.towers) != 2 or \
                "text" not in self.towers:
            raise SpecError("two_tower towers must name text and one other modality with their "
                            "towers, e.g. {'image': {'name': 'vit', ...}, 'text': {...}}; got "
                            f"{self.towers!r}")
        return next(m for m in self.towers if m != "text"), "text"

    def setup(self):
        head = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                    dot_general=dot_general_for(self.dtype))
        self.encoders = {m: build_tower(t, f"two_tower towers.{m}", self.dtype, self.param_dtype,
                                        name=param_name(m))
                         for m, t in ((m, self.towers[m]) for m in self.modalities)}
        self.heads = {m: nn.Dense(self.embed_dim, **head, name=f"{param_name(m)}_head")
                      for m in self.modalities}
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(
            self.temperature_init), (), self.param_dtype)
        if self.bias_init is not None:
            self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.bias_init),
                                         (), self.param_dtype)

    def encode(self, x: jax.Array, modality: str, train: bool = False) -> jax.Array:
        if modality not in self.encoders:
            raise SpecError(f"two_tower has no {modality!r} tower; its towers: "
                            f"{', '.join(self.modalities)}")
        return l2_normalise(self.heads[modality](self.encoders[modality](x, train=train)))

    def __call__(self, x: jax.Array, text: jax.Array, train: bool = False
                 ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array | None]]:
        first, second = self.modalities
        zx = self.encode(x, first, train=train)
        ztxt = self.encode(text, second, train=train)
        bias = (self.logit_bias.astype(jnp.float32) if self.bias_init is not None else None)
        return zx, ztxt, {"logit_scale": jnp.exp(self.logit_scale.astype(jnp.float32)),
                          "logit_bias": bias}
