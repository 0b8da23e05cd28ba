"""A model that says the same thing for every input knows nothing, and every ranking metric must
give it chance: each registered evaluator is fed a collapsed model (every embedding the same
unit vector) and its metrics are checked against the chance levels it declares
(``run.chance``). An evaluator registered without a case here fails ``test_every_evaluator_is
_covered``: it must get a case, or be listed as not ranking anything, with the reason."""
from __future__ import annotations

import types

import numpy as np
import pytest

from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS
from xmodal.data.tokenizer import ByteTokenizer

DIM = 8


class Collapsed(EvalContext):
    """Every encoder of every modality returns the same unit vector."""

    pair = ("image", "text")

    @property
    def modalities(self):
        return self.pair

    def _same(self, x):
        return np.full((len(x), DIM), 1.0 / np.sqrt(DIM), np.float32)

    def encode(self, modality, x):
        return self._same(x)

    def stream_encode(self, *modalities):
        return tuple(self._same(self.arrays[m]) for m in modalities)

    def encode_image(self, x):
        return self._same(x)

    def encode_text(self, x):
        return self._same(x)

    def apply_model(self, method, *arrays, group="model"):
        return self._same(arrays[0])


def tokens(words, length=16):
    return ByteTokenizer(length).encode_batch(list(words))


def context(arrays, class_names=(), **transform):
    transform.setdefault("tokenizer", ByteTokenizer(16))
    return Collapsed(arrays=arrays, class_names=list(class_names), params={},
                     transform=types.SimpleNamespace(**transform))


def image_text(n, rng):
    return {"image": rng.integers(0, 255, (n, 4, 4, 3), np.uint8),
            "text": tokens([f"item {i}" for i in range(n)])}


def retrieval_case(rng):
    return EVALUATORS.build("retrieval"), context(image_text(37, rng)), {}


def zeroshot_case(rng):
    arrays = dict(image_text(60, rng), label=rng.integers(0, 7, 60))
    return EVALUATORS.build("zeroshot"), context(arrays, [f"class {c}" for c in range(7)]), {}


def field_zeroshot_case(rng):
    arrays = dict(image_text(50, rng),
                  subgroup=tokens([f"group-{g}" for g in rng.integers(0, 9, 50)]))
    return EVALUATORS.build("field_zeroshot"), context(arrays), {}


def person_retrieval_case(rng):
    ids = np.repeat(np.arange(40), 3)
    arrays = dict(image_text(120, rng), identity=ids, label=np.zeros(120, np.int64),
                  style_images=rng.integers(0, 255, (120, 2, 4, 4, 3), np.uint8))
    arrays["text"] = tokens([f"person {i}" for i in ids])
    # mAP and mINP are those of one random order (Rank-K is exact): within a few points.
    return EVALUATORS.build("person_retrieval"), context(arrays, ["people"]), {"mAP": 1.5,
                                                                              "mINP": 1.5}


def same_style_case(rng):
    n = 90
    arrays = dict(image_text(n, rng), label=np.repeat(np.arange(30), 3),
                  style=np.tile(np.arange(3), 30),
                  views=rng.integers(0, 255, (n, 3, 4, 4, 3), np.uint8))
    return EVALUATORS.build("same_style"), context(arrays), {"t2i_mAP": 1.5, "t2i_mINP": 1.5}


def mvl_sib_case(rng):
    n, languages = 160, ("en", "fr", "de")
    captions = np.stack([tokens([f"{code} {i}" for i in range(n)]) for code in languages], 1)
    has = np.ones((n, len(languages)), bool)
    has[: n // 3, 2] = False                      # German covers fewer items: a coverage split
    arrays = {"image": rng.integers(0, 255, (n, 4, 4, 3), np.uint8), "captions": captions,
              "has_caption": has, "topic": rng.integers(0, 8, n)}
    return EVALUATORS.build("mvl_sib"), context(arrays, languages=languages), {}


def gqr_case(rng):
    from xmodal.projects.gqr.transform import to_bytes
    n = 300
    sections = {"food": ("fruit", "vegetables"), "animals": ("birds", "fish"),
                "shapes": ("arrows", "stars"), "people": ("clothing", "smilies"),
                "plants": ("flowers", "trees"), "tools": ("weapons", "toys"),
                "science": ("astronomy", "medicine"), "computer": ("icons", "games"),
                "transportation": ("boating", "vehicles"), "signs": ("flags", "clocks")}
    seeds = range(32)
    folders = []
    for i in range(n):       # stored grouped by folder: a tie broken by position would find them
        top = list(sections)[i * len(sections) // n]
        sub = sections[top][i % 2]
        folders.append(f"{top}/{sub}" if i % 3 else top)
    words = [f"{f.split('/')[-1]} thing {i}" for i, f in enumerate(folders)]
    arrays = dict(image=rng.integers(0, 255, (n, 4, 4, 3), np.uint8), corpus=tokens(words),
                  corpus_bytes=np.stack([to_bytes(w, 64) for w in words]),
                  folders_bytes=np.stack([to_bytes(f, 64) for f in folders]))
    runs = [EVALUATORS.build("gqr", k=10, ks=(5,), steps=5, alphas=(0.5,), lrs=(1e-3,),
                             bm25_temperatures=(1.0,), temperature=0.05, seed=s) for s in seeds]

    def run(ctx):
        # The mean over tie-break seeds estimates the expectation over random orders (15 test
        # queries: one order alone is within ~6 points of it, 16 within ~1.5).
        got = [r(ctx) for r in runs]
        return {key: float(np.mean([g[key] for g in got])) for key in got[0]}
    run.chance = runs[0].chance
    return run, context(arrays), {"*": 3.0}


def segmentation_case(rng):
    """Two lectures of 4 segments; the model embeds every clip as one vector. Each method's
    chance is its score on constant features (TW-FINCH's is time alone)."""
    lengths = ((5, 9, 3, 7), (6, 4, 8, 5))
    lecture = np.concatenate([np.full(sum(ls), i) for i, ls in enumerate(lengths)])
    position = np.concatenate([np.arange(sum(ls)) for ls in lengths])
    segment = np.concatenate([np.repeat(np.arange(len(ls)), ls) for ls in lengths])
    order = rng.permutation(len(lecture))
    arrays = {"lecture": lecture[order], "position": position[order],
              "segment": segment[order], "image": rng.normal(size=(len(lecture), 4, 4, 3))}
    run = EVALUATORS.build("segmentation", features={"view": "model:image",
                                                     "view + view": "model:image+model:image"})
    return run, context(arrays), {}


def caption_retrieval_case(rng):
    """A real captioner (random weights) whose encoder gives every clip the same tokens: its
    likelihoods then depend on the caption alone, the same ranking for every clip."""
    import jax

    from xmodal.core import parallel
    from xmodal.core.eval_context import Applier
    from xmodal.nn.captioner import Captioner

    model = Captioner(encoder=dict(name="audio_encoder", n_fft=256, hop=128, n_mels=16,
                                   channels=(4,), width=8, pool="none"),
                      decoder=dict(max_len=16, width=16, depth=1, num_heads=2))
    n = 30
    texts = tokens([f"clip {i} " + "x" * (i % 7) for i in range(n)])   # lengths differ
    audio = rng.normal(size=(n, 2000)).astype(np.float32)
    params = model.init(jax.random.PRNGKey(0), audio[:1], texts[:1, :-1])["params"]

    class SameClip(EvalContext):
        def apply_model(self, method, *arrays, group="model"):
            memory = model.apply({"params": params}, arrays[0][:1], method="encode")
            return np.repeat(np.asarray(memory), len(arrays[0]), axis=0)

    ctx = SameClip(arrays={"audio": audio, "text": texts}, class_names=[],
                   params={"model": params}, model=model,
                   transform=types.SimpleNamespace(tokenizer=ByteTokenizer(16)),
                   applier=Applier(parallel.make_mesh({"data": -1}), 16))
    return EVALUATORS.build("caption_retrieval", ks=(1, 5, 10)), ctx, {"*": 1e-4}


def videoqa_case(rng):
    """A model that scores every candidate of every question alike: 20 % on every type."""
    import flax.linen as nn
    import jax

    from xmodal.core import parallel
    from xmodal.core.eval_context import Applier

    class SameScore(nn.Module):
        @nn.compact
        def __call__(self, video, flow, question, candidates):
            bias = self.param("bias", nn.initializers.zeros, ())
            return jax.numpy.zeros(candidates.shape[:3]) + bias

    n, q = 12, 4
    arrays = {"video": rng.integers(0, 255, (n, 2, 4, 4, 3), np.uint8),
              "flow": rng.normal(size=(n, 2, 4, 4, 2)).astype(np.float16),
              "question": rng.integers(1, 9, (n, q, 3)).astype(np.int32),
              "candidates": rng.integers(1, 9, (n, q, 5, 2)).astype(np.int32),
              "answer": rng.integers(0, 5, (n, q)).astype(np.int32),
              "qtype": np.tile(np.arange(q, dtype=np.int32), (n, 1)),
              "valid": np.ones((n, q), np.float32)}
    model = SameScore()
    params = model.init(jax.random.key(0), *(arrays[k][:1] for k in
                                             ("video", "flow", "question", "candidates")))
    ctx = EvalContext(arrays=arrays, class_names=[], params={"model": params["params"]},
                      model=model, applier=Applier(parallel.make_mesh({"data": -1}), 8))
    return EVALUATORS.build("videoqa"), ctx, {}


CASES = {"retrieval": retrieval_case, "videoqa": videoqa_case, "caption_retrieval": caption_retrieval_case, "segmentation": segmentation_case, "zeroshot": zeroshot_case,
         "field_zeroshot": field_zeroshot_case, "person_retrieval": person_retrieval_case,
         "same_style": same_style_case, "mvl_sib": mvl_sib_case, "gqr": gqr_case}

# Evaluators that rank or pick nothing: they measure generated samples against references
# (a collapsed generator scores badly on them, which is what they should show).
NOT_RANKING = {
    "restoration": "PSNR/SSIM/Fréchet distance of restored images",
    "sliced_wasserstein": "distance between generated and data distributions",
    "mel_vae": "reconstruction error and latent statistics",
    "separation": "SI-SDR and spectral distances of separated audio",
    "mask_separation": "SI-SDR of a mask network's separated audio",
    "captioning": "BLEU/METEOR/ROUGE-L/CIDEr-D of generated captions against references",
}
# Ranking evaluators whose collapsed-model check is at the metric level for now: their
# contexts need a trained objective (M3EL's score matrix, M3PT's tag tokens);
# tests/test_ranking_metrics.py feeds their metric functions collapsed scores.
METRIC_LEVEL = {
    "entity_linking": "entity_linking_metrics: test_entity_linking_matches_brute_force",
    "tagging": "tagging_metrics: test_tagging_ties_are_drawn_at_random",
}


def test_every_evaluator_is_covered():
    names = set(EVALUATORS.names())
    covered = set(CASES) | set(NOT_RANKING) | set(METRIC_LEVEL)
    assert names <= covered, f"evaluators without a collapsed-model case: {names - covered}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_collapsed_model_scores_chance(name):
    run, ctx, tolerance = CASES[name](np.random.default_rng(0))
    got = run(ctx)
    chance = run.chance(ctx)
    assert chance, f"{name} declares no chance levels"
    for key, value in chance.items():
        assert key in got, (name, key, sorted(got))
        tol = tolerance.get(key, tolerance.get("*", 1e-6))
        assert got[key] == pytest.approx(value, abs=tol), (name, key)
    # The cases are sized so that chance is far from a perfect score on the headline metric.
    assert min(chance.values()) < 30, chance
