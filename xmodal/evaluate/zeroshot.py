"""Zero-shot classification with text-derived class embeddings (Radford et al. 2021, CLIP).

Each class name is written into several prompt templates, the text tower embeds every prompt,
and the class embedding is the re-normalised mean over templates ("prompt ensembling", CLIP
Sec. 3.1.4). An image is classified by cosine similarity to the class embeddings.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xmodal.evaluate.retrieval import check_ks, ranks_t2i

PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a low resolution photo of a {}.",
    "a drawing of a {}.",
    "{}",
)


def zeroshot_classifier(class_text_emb) -> jax.Array:
    """[C, T, D] prompt embeddings (C classes, T templates) -> [C, D] class embeddings.

        w_c = mean_t e_{c,t} / || mean_t e_{c,t} ||
    """
    emb = jnp.asarray(class_text_emb, jnp.float32)
    if emb.ndim != 3:
        raise ValueError(
            f"class_text_emb must be [classes, templates, dim]; got shape {tuple(emb.shape)}. "
            f"With a single template, add the axis: emb[:, None, :].")
    mean = jnp.mean(emb, axis=1)
    # The floor keeps a class whose template embeddings cancel out at zero instead of NaN.
    norm = jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
    return mean / norm


def zeroshot_accuracy(img_emb, classifier, labels, ks: Sequence[int] = (1, 5),
                      chunk_size: int = 1024) -> dict[str, float]:
    """Top-k accuracy in percent, keys ``top{k}``; a k of at least C classes gives 100.

    ``img_emb`` [N, D], ``classifier`` [C, D] (from ``zeroshot_classifier``), ``labels`` [N].
    An image is top-k correct when fewer than k classes score strictly higher than its true
    class (ties go in the image's favour, the rank rule of ``xmodal.evaluate.retrieval``).
    """
    ks = check_ks(ks)
    classifier = jnp.asarray(classifier)
    if classifier.ndim != 2:
        raise ValueError(f"classifier must be [classes, dim]; got shape {tuple(classifier.shape)}.")
    img_emb = jnp.asarray(img_emb, jnp.float32)
    if img_emb.ndim != 2 or img_emb.shape[1] != classifier.shape[1]:
        raise ValueError(
            f"img_emb must be [N, dim] with the classifier's dim; got img_emb "
            f"{tuple(img_emb.shape)} and classifier {tuple(classifier.shape)}.")
    labels = np.asarray(labels)
    num_classes = classifier.shape[0]
    if labels.shape != (img_emb.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be [N] = ({img_emb.shape[0]},) integer class indices; got shape "
            f"{labels.shape}, dtype {labels.dtype}.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) (the number of classes); got range "
            f"[{labels.min()}, {labels.max()}].")
    # Images as queries against the class embeddings as gallery: the label's rank among classes.
    ranks = ranks_t2i(classifier, img_emb, labels, chunk_size)
    return {f"top{k}": float(100.0 * np.mean(ranks.hit_at(k))) for k in ks}
