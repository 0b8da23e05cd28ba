"""M3PT objective (Yang et al. 2023, "M3PT: A Multi-Modal Model for POI Tagging"): match the
fused item embedding to the embeddings of the tag strings, multi-label.

With zitem the text-image fusion of an item, zimg/ztxt its uni-modal embeddings, ztag the text
tower's embeddings of all T vocabulary tags and Y [B, T] the item's gold tags:

    L = ML(zitem, ztag, Y)                       item-to-tag matching
      + w_die   · ML(zimg, ztag, Y)              domain-adaptive image encoder: the image
                                                 embedding alone is aligned to its gold tags
      + w_align · NCE(zimg, ztxt)                contrastive image-text alignment of one item

ML is ``multilabel_softmax_loss`` (each positive tag against the item's negative tags; the
ranking form suits the P@K/R@K metric) or ``multilabel_sigmoid_loss`` (``loss="sigmoid"``),
NCE is ``clip_loss``. The DIE and alignment terms exist only when the item uses the image
(and, for alignment, the text too: ``model.item_modalities``).

The tag vocabulary is rebuilt here with ``tag_vocabulary`` from the same arguments as the
``emoji_tags`` transform (the spec links them); the tagging evaluator checks they agree.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from xmodal.data.tokenizer import ByteTokenizer
from xmodal.projects.m3pt.transform import tag_vocabulary
from xmodal.core.registry import OBJECTIVES
from xmodal.losses.contrastive import clip_loss
from xmodal.losses.multilabel import multilabel_sigmoid_loss, multilabel_softmax_loss

LOSSES = ("softmax", "sigmoid")


@dataclasses.dataclass(frozen=True)
class M3PTObjective:
    model: Any
    mesh: Mesh
    vocab: tuple[str, ...]
    tag_tokens: np.ndarray          # int32 [T, max_tag_len]
    kind: str
    die_weight: float
    align_weight: float
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        variables = self.model.init({"params": rng}, batch["image"], batch["text"],
                                    jnp.asarray(self.tag_tokens))
        return {"model": variables["params"]}

    def match(self, z, ztag, labels, extras):
        if self.kind == "softmax":
            return multilabel_softmax_loss(z, ztag, labels, extras["logit_scale"])
        return multilabel_sigmoid_loss(z, ztag, labels, extras["logit_scale"],
                                       extras["logit_bias"])

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model"):
        zitem, ztag, extras = self.model.apply(
            {"params": params["model"]}, batch["image"], batch["text"],
            jnp.asarray(self.tag_tokens), train=True, rngs={"dropout": rng})
        labels = batch["tags"].astype(bool)
        loss, aux = self.match(zitem, ztag, labels, extras)
        aux = {f"item_{k}": v for k, v in aux.items()}
        aux["item_loss"] = loss
        if extras["zimg"] is not None and self.die_weight > 0:
            die, die_aux = self.match(extras["zimg"], ztag, labels, extras)
            loss += self.die_weight * die
            aux.update(die_loss=die, **{f"die_{k}": v for k, v in die_aux.items()
                                        if k != "tagged_items"})
        if extras["zimg"] is not None and extras["ztxt"] is not None and self.align_weight > 0:
            align, align_aux = clip_loss(extras["zimg"], extras["ztxt"], extras["logit_scale"])
            loss += self.align_weight * align
            aux.update(align_loss=align, align_i2t_acc=align_aux["i2t_acc"])
        aux.update(logit_scale=extras["logit_scale"], logit_bias=extras["logit_bias"])
        return loss, aux


@OBJECTIVES.register("m3pt")
def m3pt(dataset: str = "emoji_styles", data_dir: str = "", vocab_split: str = "train",
         min_count: int = 3, max_tag_len: int = 24, loss: str = "softmax",
         die_weight: float = 0.5, align_weight: float = 0.5):
    """Item-to-tag matching + DIE + image-text alignment (see the module docstring)."""
    if loss not in LOSSES:
        raise ValueError(f"m3pt loss={loss!r} is not one of {', '.join(LOSSES)}")
    for name, w in (("die_weight", die_weight), ("align_weight", align_weight)):
        if not w >= 0:
            raise ValueError(f"m3pt {name} must be >= 0 (0 turns the term off), got {w}")
    vocab = tag_vocabulary(dataset, vocab_split, min_count, data_dir)
    tokens = ByteTokenizer(max_tag_len).encode_batch(list(vocab))
    return lambda model, mesh: M3PTObjective(model, mesh, vocab, tokens, loss,
                                             float(die_weight), float(align_weight))
