"""Using a trained two-tower workdir: Embedder, --mode=embed, --mode=zeroshot, the retrieval
sheet the retrieval evaluator writes."""
import json
import os
import subprocess

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests import cli
from xmodal.core import datasets as sources
from xmodal.core import spec as spec_lib
from xmodal.core.registry import COMMANDS, CommandError
from xmodal.data.transforms.audio_text import audio_text
from xmodal.inference import Embedder
from xmodal.inference.two_tower import read_waveform

pytestmark = [pytest.mark.needs_data("emoji"), pytest.mark.slow]
SPEC = "specs/clip.py:runlocal"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("clip") / "run"
    cli.run(SPEC, wd, "--spec.train.steps=2")
    return str(wd)


@pytest.fixture(scope="module")
def records():
    src = sources.data_source("emoji/tiny", "test")
    return [src[i] for i in range(3)]


def _spec():
    return spec_lib.validate(spec_lib.load(SPEC))


def test_training_wrote_a_retrieval_sheet(workdir):
    path = os.path.join(workdir, "sheets", "retrieval_0000002.png")
    with Image.open(path) as im:
        # 1 + sheet_k columns; a title, two section headers and 2 x 8 query rows.
        from xmodal.evaluate import retrieval_sheet as rs
        assert im.size == (6 * rs.CELL_W, 3 * rs.HEADER + 16 * rs.CELL_H)


def test_embedding_a_file_matches_the_eval_pipeline(workdir, records, tmp_path):
    emb = Embedder.from_workdir(workdir)
    assert emb.step == 2 and emb.class_names   # the emoji groups, from the data set
    paths = []
    for i, r in enumerate(records):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(r["image"]).save(paths[-1])
    from_files = emb.embed_items(paths)
    # The transform the eval split went through (resize to the model's size) + encode_image.
    arrays = [emb.transform.map(r)["image"] for r in records]
    np.testing.assert_allclose(from_files, emb.embed_items(arrays), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(from_files, axis=-1), 1.0, rtol=1e-5)
    texts = [r["name"].decode() for r in records]
    zt = emb.embed_texts(texts)
    tokens = np.stack([emb.transform.map(r)["text"] for r in records])
    np.testing.assert_allclose(zt, emb._apply("text", tokens), atol=1e-6)


def test_zeroshot_is_a_softmax_over_prompt_ensembles(workdir, records):
    emb = Embedder.from_workdir(workdir)
    items = [emb.transform.map(r)["image"] for r in records]
    probs, names = emb.zeroshot(items, ["smiley face", "flag", "food"])
    assert names == ("smiley face", "flag", "food") and probs.shape == (3, 3)
    logits = emb.logit_scale * emb.embed_items(items) @ emb.classifier(names).T
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), rtol=1e-5)
    assert emb.logit_scale == pytest.approx(np.exp(emb.params["logit_scale"]))


def test_embed_and_zeroshot_commands(workdir, records, tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(records[0]["image"]).save(img)
    out = tmp_path / "e" / "emb.npz"
    got = COMMANDS.get("embed")(_spec(), workdir, [f"--image={img}", "--text=grinning face",
                                                   "--text=flag", f"--out={out}"])
    saved = np.load(out)    # no pickle needed: strings are unicode arrays
    assert list(saved["texts"]) == ["grinning face", "flag"] and list(saved["items"]) == [str(img)]
    np.testing.assert_allclose(saved["item_embeddings"], got["item_embeddings"])
    # The workdir's own (tiny, 16-d) model, from its spec.json, not the runlocal spec's.
    np.testing.assert_allclose(saved["text_embeddings"], Embedder.from_workdir(workdir)
                               .embed_texts(["grinning face", "flag"]), atol=1e-6)
    assert saved["text_embeddings"].shape == (2, 16)
    res = COMMANDS.get("zeroshot")(_spec(), workdir, [f"--image={tmp_path}", "--top=2"])
    assert len(res["results"]) == 1 and len(res["results"][0]["top"]) == 2
    np.testing.assert_allclose(res["probabilities"].sum(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--image=/nope.png"], "does not exist"),
    (["--audio=/x.wav"], "takes images: use --image="),
    (["--colour=red"], "--mode=embed: unrecognized arguments"),
    ([], "give --image=FILE"),
])
def test_embed_bad_input_is_one_clear_error(workdir, argv, message):
    with pytest.raises(CommandError, match=message):
        COMMANDS.get("embed")(_spec(), workdir, argv)


def test_untrained_workdir_and_bad_file(tmp_path, workdir):
    with pytest.raises(CommandError, match="no trained run"):
        Embedder.from_workdir(str(tmp_path))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(CommandError, match="junk.png.*as an image"):
        Embedder.from_workdir(workdir).embed_items([str(junk)])


def test_read_waveform_resamples_and_fits_the_clip():
    class Stub:   # the two things read_waveform reads of an Embedder
        stage = type("S", (), {"spec": {"model": {"towers": {"audio": {
            "name": "audio_encoder", "sample_rate": 8000}}}}})
        transform = audio_text(num_samples=3000)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tone.wav")
        t = np.arange(16000 // 2) / 16000
        sf.write(path, np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1), 16000)
        wave = read_waveform(path, Stub())
    assert wave.shape == (3000,) and wave.dtype == np.float32
    # 440 Hz survives resampling to 8 kHz: the spectrum peaks there.
    spec = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spec) * 8000 / 3000 - 440) < 8


def test_zeroshot_through_the_cli(workdir, records, tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(records[0]["image"]).save(img)
    r = subprocess.run([cli.sys.executable, "-m", "xmodal.main", f"--spec={SPEC}",
                        f"--workdir={workdir}", "--mode=zeroshot", f"--image={img}",
                        "--classes=smiley face,flag"], cwd=cli.ROOT, env=cli.env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [l for l in r.stdout.splitlines() if l.startswith(str(img))][0]
    assert "smiley face" in line and "flag" in line and "%" in line
    # What the prediction is worth: chance over the 2 classes given, and that the model was
    # measured on its own classes only (its training eval logged eval/zeroshot_top1).
    worth = [l for l in r.stdout.splitlines() if l.startswith("measured zero-shot top-1")]
    assert len(worth) == 1 and "chance is 50.0 %" in worth[0], r.stdout
    assert "eval/zeroshot_top1, step 2" in worth[0] and "not measured on them" in worth[0]
    bad = subprocess.run([cli.sys.executable, "-m", "xmodal.main", f"--spec={SPEC}",
                          f"--workdir={workdir}", "--mode=zeroshot", "--image=/nope.png"],
                         cwd=cli.ROOT, env=cli.env(), capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: ")


def test_zeroshot_says_what_its_predictions_are_worth(tmp_path):
    from xmodal.inference.commands import how_good
    assert "never measured" in how_good(str(tmp_path), 9, own_classes=True)
    rows = [{"step": 10, "eval/zeroshot_top1": 30.0},
            {"step": 20, "eval/effects/zeroshot_top1": 90.0, "eval/zeroshot_top1": 6.7}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = how_good(str(tmp_path), 9, own_classes=True)       # the last eval, the main set
    assert line == ("measured zero-shot top-1 on its test split: 6.7 % against chance 11.1 % "
                    "(BELOW CHANCE: its predictions are not to be trusted; eval/zeroshot_top1, "
                    "step 20)")
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert "(2.7x chance; eval/zeroshot_top1, step 10)" in how_good(str(tmp_path), 9, True)
