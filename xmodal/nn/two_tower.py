"""Two-tower image-text model for contrastive matching (CLIP: Radford et al., 2021; SigLIP:
Zhai et al., "Sigmoid Loss for Language Image Pre-Training", 2023).

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


@MODELS.register("two_tower")
class TwoTower(nn.Module):
    """``(image, text) -> (zimg [B, embed_dim], ztxt [B, embed_dim], {"logit_scale",
    "logit_bias"})``, embeddings unit-norm f32.

    ``image`` and ``text`` are tower specs, e.g. ``{"name": "vit", "width": 256}`` and
    ``{"name": "text_transformer", "width": 256}``; ``dtype`` (compute) and ``param_dtype`` are
    passed to both. Towers are ``img`` and ``txt`` in the parameter tree.
    """
    image: Mapping[str, Any]
    text: Mapping[str, Any]
    embed_dim: int = 256
    temperature_init: float = math.log(10.0)
    bias_init: float | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        self.img = build_tower(self.image, "two_tower image", self.dtype, self.param_dtype,
                               name="img")
        self.txt = build_tower(self.text, "two_tower text", self.dtype, self.param_dtype,
                               name="txt")
        head = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                    dot_general=dot_general_for(self.dtype))
        self.img_head = nn.Dense(self.embed_dim, **head)
        self.txt_head = nn.Dense(self.embed_dim, **head)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(
            self.temperature_init), (), self.param_dtype)
        if self.bias_init is not None:
            self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.bias_init),
                                         (), self.param_dtype)

    # Arguments ``image``/``text`` are arrays; ``self.image``/``self.text`` are the tower specs.
    def encode_image(self, image: jax.Array, train: bool = False) -> jax.Array:
        return l2_normalise(self.img_head(self.img(image, train=train)))

    def encode_text(self, text: jax.Array, train: bool = False) -> jax.Array:
        return l2_normalise(self.txt_head(self.txt(text, train=train)))

    def __call__(self, image: jax.Array, text: jax.Array, train: bool = False
                 ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array | None]]:
        zimg = self.encode_image(image, train=train)
        ztxt = self.encode_text(text, train=train)
        bias = (self.logit_bias.astype(jnp.float32) if self.bias_init is not None else None)
        return zimg, ztxt, {"logit_scale": jnp.exp(self.logit_scale.astype(jnp.float32)),
                            "logit_bias": bias}
