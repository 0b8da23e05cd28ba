"""Training on a mixture of sources (``pipeline.mixture_loader``, ``data.mix`` in a spec): the
real instruments/tiny and tuxpaint/effects_tiny sources, each with its own audio_text transform
(the effects have another audio field and no label), interleaved deterministically."""
import dataclasses

import numpy as np
import pytest
from absl import flags

from tests.data_helpers import (assert_resumes_through_orbax, assert_same_batches, first, ids,
                                skip_unless_installed)
from xmodal.core import spec as spec_lib
from xmodal.core import datasets as sources
from xmodal.core.input import Part, mixture_loader
from xmodal.core.registry import TRANSFORMS
from xmodal.core.registry import SpecError

pytestmark = [skip_unless_installed("instruments/tiny"),
              skip_unless_installed("tuxpaint/effects_tiny")]

BATCH = 16
SAMPLES = 2000     # clips cut short: the tests are about which records, not their sound


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """(instrument part, effect part): text = the record's unique id (item / stamp path)."""
    data_dir = str(tmp_path_factory.mktemp("data"))
    inst = TRANSFORMS.build("audio_text", max_text_len=64, text_field="item",
                            num_samples=SAMPLES, gain_db=6.0)
    fx = TRANSFORMS.build("audio_text", max_text_len=64, audio_field="sound", text_field="stamp",
                          label_field="", num_samples=SAMPLES, gain_db=6.0)
    return (sources.data_source("instruments/tiny", "train", data_dir), inst,
            sources.data_source("tuxpaint/effects_tiny", "train", data_dir), fx)


def loader(parts, weight=0.25, seed=0, shard_index=0, shard_count=1, worker_count=0,
           global_batch_size=BATCH):
    inst_src, inst, fx_src, fx = parts
    return mixture_loader(
        [Part(inst_src, inst, 1.0, inst.augment), Part(fx_src, fx, weight, fx.augment)],
        global_batch_size=global_batch_size, seed=seed, shard_index=shard_index,
        shard_count=shard_count, worker_count=worker_count)


def test_batches_hold_both_sources_with_their_own_transform(parts):
    batch = next(iter(loader(parts)))
    assert batch["audio"].shape == (BATCH, SAMPLES) and batch["label"].shape == (BATCH,)
    effects = batch["label"] == -1
    stamps = {r["stamp"].decode() for r in (parts[2][i] for i in range(len(parts[2])))}
    # Effects (no label) carry stamp paths, instruments their item ids and a real label.
    assert all((i in stamps) == e for i, e in zip(ids(batch), effects))
    assert 0 < effects.sum() < BATCH and (batch["label"][~effects] >= 0).all()
    assert np.abs(batch["audio"]).max(axis=1).min() > 0   # every clip audible, none padding


def test_same_seed_same_batches_other_seed_different(parts):
    a = first(iter(loader(parts, seed=3)), 3)
    assert_same_batches(a, first(iter(loader(parts, seed=3)), 3))
    assert [ids(x) for x in a] != [ids(x) for x in first(iter(loader(parts, seed=4)), 3)]


@pytest.mark.parametrize("weight", [0.25, 1.0])
def test_weights_give_the_share_of_each_source(parts, weight):
    batches = first(iter(loader(parts, weight=weight)), 40)
    labels = np.concatenate([b["label"] for b in batches])
    share = np.mean(labels == -1)
    assert share == pytest.approx(weight / (1 + weight), abs=0.01)
    # Every batch, not only the average, has about that share (a deterministic interleave).
    per_batch = [np.mean(b["label"] == -1) for b in batches]
    assert max(per_batch) - min(per_batch) <= 1 / BATCH + 1e-9
    # 40 batches pass over the 36 effect records several times, reshuffled each pass.
    fx = [i for b in batches for i, lab in zip(ids(b), b["label"]) if lab == -1]
    n = len(parts[2])
    assert len(fx) > 2 * n and set(fx[:n]) == set(fx[n:2 * n]) and fx[:n] != fx[n:2 * n]


def test_shards_together_make_the_single_process_batch(parts):
    single = first(iter(loader(parts, seed=2)), 3)
    shards = [first(iter(loader(parts, seed=2, shard_index=i, shard_count=2)), 3)
              for i in (0, 1)]
    for step in range(3):
        assert shards[0][step]["text"].shape[0] == BATCH // 2
        assert (sorted(ids(shards[0][step]) + ids(shards[1][step]))
                == sorted(ids(single[step])))
        # Row 2i + p of the single batch is row i of shard p, augmented alike (the gain is
        # seeded before sharding); rows, not ids, since a batch may span two passes over a
        # source and hold one record twice with two gains.
        for key in single[step]:
            interleaved = np.stack([shards[0][step][key], shards[1][step][key]], axis=1)
            np.testing.assert_array_equal(interleaved.reshape(single[step][key].shape),
                                          single[step][key])


def test_workers_do_not_change_batches(parts):
    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    in_process = first(iter(loader(parts, seed=7)), 3)
    it = iter(loader(parts, seed=7, worker_count=2))
    with_workers = first(it, 3)
    it.close()
    assert_same_batches(in_process, with_workers)


def test_state_round_trips_through_orbax(parts, tmp_path):
    assert_resumes_through_orbax(lambda: loader(parts, seed=5), 3, 2, tmp_path / "ckpt")


def test_parts_must_batch_together(parts):
    inst_src, inst, fx_src, _ = parts
    longer = TRANSFORMS.build("audio_text", audio_field="sound", text_field="stamp",
                              label_field="", num_samples=2 * SAMPLES, max_text_len=64)
    with pytest.raises(ValueError, match=r"part 0 vs part 1: audio: float32\[2000\] vs "
                                         r"float32\[4000\]\)"):
        mixture_loader([Part(inst_src, inst), Part(fx_src, longer)], global_batch_size=BATCH,
                       seed=0, shard_index=0, shard_count=1, worker_count=0)
    with pytest.raises(ValueError, match="weight must be a finite number > 0"):
        mixture_loader([Part(inst_src, inst), Part(fx_src, parts[3], 0.0)],
                       global_batch_size=BATCH, seed=0, shard_index=0, shard_count=1,
                       worker_count=0)


# ------------------------------------------------------------------------- spec validation


def _clap(**mix_entry):
    c = spec_lib.load("specs/clap.py:tiny")
    c.data.mix.effects.update(mix_entry)
    return c


def test_clap_spec_mixes_effects_by_default_and_not_with_effects_false():
    c = spec_lib.validate(spec_lib.load("specs/clap.py:runlocal"))
    assert c.data.name == "instruments" and list(c.data.mix) == ["effects"]
    fx = c.data.mix.effects
    assert fx.name == "tuxpaint/effects" and fx.weight == 0.25 and fx.transform.label_field == ""
    assert fx.transform.num_samples == c.data.transform.num_samples == 32000
    assert c.evals.retrieval_effects.data == "effects"
    # Every entry key is in the spec, so the command line reaches it.
    assert sorted(spec_lib.load("specs/clap.py").data.mix.effects) == [
        "eval_split", "name", "train_split", "transform", "weight"]
    only = spec_lib.validate(spec_lib.load("specs/clap.py:runlocal,effects=false"))
    assert not only.data.mix and "retrieval_effects" not in only.evals


def test_bad_key_in_a_mix_entry_names_the_valid_keys():
    c = spec_lib.load("specs/clap.py:tiny")
    c.data.mix.effects.wieght = 0.5
    with pytest.raises(SpecError, match=r"unknown spec key 'data\.mix\.effects\.wieght'; valid "
                                        r"keys at data\.mix\.effects: eval_split, name, "
                                        r"train_split, transform, weight"):
        spec_lib.validate(c)
    with pytest.raises(SpecError, match=r"data\.mix\.effects\.transform 'audio_text' has no "
                                        r"argument\(s\) sample_rate; valid keys: max_text_len"):
        spec_lib.validate(_clap(transform=dict(name="audio_text", sample_rate=16000)))
    with pytest.raises(SpecError, match=r"'data\.mix\.effects\.weight' must be a finite number "
                                        r"> 0, got 0\.0"):
        spec_lib.validate(_clap(weight=0.0))
    c = spec_lib.load("specs/clap.py:tiny")
    c.data.mix.effects = dict(weight=0.5)
    with pytest.raises(SpecError, match=r"'data\.mix\.effects' must set name, transform; "
                                        r"valid keys: eval_split, name"):
        spec_lib.validate(c)


def test_an_evaluator_must_name_an_existing_eval_set():
    c = spec_lib.load("specs/clap.py:tiny")
    c.evals.retrieval_effects.data = "efects"
    with pytest.raises(SpecError, match=r"evals\.retrieval_effects\.data' = 'efects' names no "
                                        r"eval set; valid: '' \(data\.name\), effects"):
        spec_lib.validate(c)


# ------------------------------------------------------------------------- unlabelled sources


def test_audio_text_without_a_label_field():
    tr = TRANSFORMS.build("audio_text", max_text_len=24, audio_field="sound", label_field="",
                          num_samples=100, label_prompt="{article} {label} sound",
                          label_names=("oboe",), label_prob=1.0)
    out = tr.map({"sound": np.ones(300, np.float32), "caption": "A crow."})
    assert out["label"] == -1 and out["audio"].shape == (100,)
    # label_text is the caption, so even a certain label swap keeps "A crow.".
    np.testing.assert_array_equal(out["label_text"], out["text"])
    swapped = tr.augment.random_map(out, np.random.default_rng(0))
    assert tr.tokenizer.decode(swapped["text"]) == "A crow."


def test_zeroshot_leaves_unlabelled_examples_out():
    import flax.linen as nn

    from xmodal.core import parallel
    from xmodal.core.registry import EVALUATORS
    from xmodal.core.eval_context import Applier, EvalContext

    class OneHot(nn.Module):
        """Clip i embeds as its own row; a prompt as [1, 0] for class "x", [0, 1] else."""
        modalities = ("audio", "text")

        def encode(self, x, modality):
            if modality == "audio":
                return x
            is_x = x[:, 1] == ord("x") + 3          # byte tokens are byte + 3
            return nn.one_hot(1 - is_x.astype(int), 2)

        def __call__(self, x):
            return x

    images = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], np.float32)
    ctx = EvalContext(arrays={"audio": images, "label": np.array([0, 1, -1, -1], np.int32)},
                      class_names=["x", "y"], params={"model": {}}, model=OneHot(),
                      transform=TRANSFORMS.build("audio_text"),
                      applier=Applier(parallel.make_mesh({"data": -1, "fsdp": 1, "model": 1}), 8))
    run = EVALUATORS.build("zeroshot", templates=("{}",), ks=(1,))
    assert run(ctx) == {"zeroshot_top1": 100.0}
    unlabelled = dataclasses.replace(ctx, arrays={"audio": images,
                                                  "label": np.full(4, -1, np.int32)})
    with pytest.raises(ValueError, match="0 labelled of 4 examples"):
        run(unlabelled)
