"""Pretrained CLIP from an open_clip checkpoint: the BPE tokenizer, the converted towers and the
written stage against open_clip's own outputs (tests/fixtures/open_clip_tiny, made with
open_clip 3.3.0), and the converter's one-line errors on bad input."""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "open_clip_tiny"
WEIGHTS = FIXTURES / "open_clip_model.safetensors"
CONFIG = FIXTURES / "open_clip_config.json"
VOCAB = FIXTURES / "bpe_simple_vocab_16e6.txt.gz"
OUTPUTS = FIXTURES / "open_clip_outputs.npz"
ATOL = 1e-5



@pytest.fixture(scope="module")
def expected():
    with np.load(OUTPUTS, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def converted():
    from xmodal.convert import open_clip
    return open_clip.load(str(WEIGHTS), str(CONFIG))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The folder the command line writes."""
    from xmodal.convert.__main__ import main
    out = tmp_path_factory.mktemp("converted") / "clip"
    assert main(["open_clip", "--weights", str(WEIGHTS), "--config", str(CONFIG),
                 "--out", str(out)]) == 0
    return out


def features(model, params, expected):
    """xmodal's own forward in float32: (image features, text features, logit scale)."""
    images = jnp.asarray(expected["images_nchw"].transpose(0, 2, 3, 1))  # NCHW -> NHWC
    ids = jnp.asarray(expected["token_ids"], jnp.int32)
    variables = {"params": params}
    # Full f32 matrix products on any backend (TPU/GPU default to fewer bits).
    with jax.default_matmul_precision("float32"):
        zimg = model.apply(variables, images, "image", method="encode")
        ztxt = model.apply(variables, ids, "text", method="encode")
        _, _, aux = model.apply(variables, images, ids[:3])
    assert zimg.dtype == ztxt.dtype == jnp.float32
    return np.asarray(zimg), np.asarray(ztxt), float(aux["logit_scale"])


# ------------------------------------------------------------------------------ tokenizer

def test_tokenizer_gives_open_clip_ids(expected):
    from xmodal.data.clip_bpe import ClipBPETokenizer
    tok = ClipBPETokenizer(str(VOCAB))
    captions = [str(c) for c in expected["captions"]]
    ids = tok.encode_batch(captions)
    assert ids.dtype == np.int32 and ids.shape == (5, 77)
    np.testing.assert_array_equal(ids, expected["token_ids"])
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.max_len) == (49408, 49406, 49407, 77)
    assert tok.decode(ids[0]) == "a photo of a cat"
    assert tok.decode(ids[3]).endswith("🎂")


def test_tokenizer_truncates_keeping_the_end_token():
    from xmodal.data.clip_bpe import ClipBPETokenizer
    tok = ClipBPETokenizer(str(VOCAB), context_length=8)
    body = tok.tokens("one two three four five six seven eight nine")
    ids = tok.encode("one two three four five six seven eight nine")
    assert len(body) > 8
    np.testing.assert_array_equal(ids, [tok.bos_id, *body[:6], tok.eos_id])


def test_image_text_transform_uses_the_bpe_tokenizer(expected):
    from xmodal.core.registry import TRANSFORMS
    import xmodal.data.transforms.image_text  # noqa: F401  (registers image_text)
    t = TRANSFORMS.build("image_text", image_size=64, max_text_len=77, tokenizer="clip_bpe",
                         vocab=str(VOCAB))
    np.testing.assert_array_equal(t.tokenizer.encode(str(expected["captions"][4])),
                                  expected["token_ids"][4])
    with pytest.raises(ValueError, match="needs vocab"):
        TRANSFORMS.build("image_text", tokenizer="clip_bpe")


# ------------------------------------------------------------------------------ towers

def test_converted_towers_give_open_clip_features(converted, expected):
    from xmodal.core.stages import build_model
    model = build_model(converted.model_spec)  # float32
    assert converted.tensors == 62
    zimg, ztxt, scale = features(model, converted.params, expected)
    img_err = np.abs(zimg - expected["image_features"]).max()
    txt_err = np.abs(ztxt - expected["text_features"]).max()
    print(f"max |image features - open_clip| = {img_err:.2e}, "
          f"max |text features - open_clip| = {txt_err:.2e}")
    np.testing.assert_allclose(zimg, expected["image_features"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(ztxt, expected["text_features"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(scale, expected["logit_scale"], rtol=1e-6)


def test_text_tower_reads_id_0_and_pools_at_the_end_token(converted):
    """CLIP's text tower as open_clip runs it: id 0 is "!" (a token, not padding), and what
    follows the end token never changes the features (causal mask, end-token pooling)."""
    from xmodal.core.stages import build_model
    model = build_model(converted.model_spec)

    def encode(params, ids):
        return np.asarray(model.apply({"params": params}, jnp.asarray(ids), "text",
                                      method="encode"))

    ids = np.zeros((2, 77), np.int32)
    ids[:, :5] = [49406, 320, 0, 2368, 49407]    # "a ! cat"
    ids[1, 5:8] = [320, 2368, 320]               # after the end token: ignored
    z = encode(converted.params, ids)
    np.testing.assert_allclose(z[0], z[1], atol=1e-6)
    # The embedding of id 0 reaches the pooled features.
    params = jax.tree.map(lambda x: x, converted.params)
    params["txt"] = dict(params["txt"], token_embed={
        "embedding": converted.params["txt"]["token_embed"]["embedding"].copy()})
    # Not a constant shift, which the LayerNorms would remove.
    params["txt"]["token_embed"]["embedding"][0] += np.linspace(-0.1, 0.1, 64, dtype=np.float32)
    assert np.abs(encode(params, ids[:1])[0] - z[0]).max() > 1e-3


# ------------------------------------------------------------------------------ written stage

def test_written_stage_loads_back_to_the_same_features(written, converted, expected):
    from xmodal.core import checkpoint as ckpt_lib
    from xmodal.core import stages
    stage = stages.load_stage(str(written))
    assert stage.spec["model"] == stages.tuples(converted.model_spec)
    zimg, ztxt, scale = features(stage.model, stage.params["model"], expected)
    np.testing.assert_allclose(zimg, expected["image_features"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(ztxt, expected["text_features"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(scale, expected["logit_scale"], rtol=1e-6)

    # init_from's reader, with the abstract parameters a trainer would pass.
    image = jnp.zeros((1, 64, 64, 3), jnp.float32)
    shapes = jax.eval_shape(stage.model.init, jax.random.key(0), image,
                            jnp.zeros((1, 77), jnp.int32))["params"]
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {"model": jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)}
    restored = ckpt_lib.restore_params(str(written), abstract)
    for got, want in zip(jax.tree.leaves(restored["model"]), jax.tree.leaves(converted.params)):
        np.testing.assert_array_equal(np.asarray(got), want)

    # The spec's transform tokenises as open_clip does, from the vocabulary copied beside it.
    from xmodal.core.registry import TRANSFORMS
    node = stage.spec["data"]["transform"]
    transform = TRANSFORMS.build(node["name"], **{k: v for k, v in node.items() if k != "name"})
    assert node["vocab"].startswith(str(written))
    np.testing.assert_array_equal(
        transform.tokenizer.encode_batch([str(c) for c in expected["captions"]]),
        expected["token_ids"])


# ------------------------------------------------------------------------------ bad input

def convert_error(capsys, tmp_path, weights, config=CONFIG) -> str:
    """Runs the command line on bad input: exit 2, one line on stderr, nothing written."""
    from xmodal.convert.__main__ import main
    out = tmp_path / "out"
    rc = main(["open_clip", "--weights", str(weights), "--config", str(config),
               "--vocab", str(VOCAB), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "\n" not in err, err
    assert not out.exists()
    return err


@pytest.fixture(scope="module")
def state():
    from safetensors.numpy import load_file
    return load_file(str(WEIGHTS))


def save(tmp_path, tensors) -> Path:
    from safetensors.numpy import save_file
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    return path


def test_missing_tensor_is_named(state, tmp_path, capsys):
    tensors = {k: v for k, v in state.items() if k != "visual.ln_pre.weight"}
    err = convert_error(capsys, tmp_path, save(tmp_path, tensors))
    assert "'visual.ln_pre.weight'" in err and "missing" in err


def test_wrong_shape_is_named(state, tmp_path, capsys):
    tensors = dict(state, **{"visual.proj": np.zeros((64, 16), np.float32)})
    err = convert_error(capsys, tmp_path, save(tmp_path, tensors))
    assert "'visual.proj'" in err and "(64, 16)" in err and "(64, 32)" in err


def test_unmapped_tensor_is_named(state, tmp_path, capsys):
    tensors = dict(state, **{"visual.transformer.resblocks.2.ln_1.weight":
                             np.ones(64, np.float32)})
    err = convert_error(capsys, tmp_path, save(tmp_path, tensors))
    assert "'visual.transformer.resblocks.2.ln_1.weight'" in err and "no place" in err


def test_non_safetensors_file_is_named(tmp_path, capsys):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"PK\x03\x04 this is a zip-pickled torch checkpoint, not safetensors")
    err = convert_error(capsys, tmp_path, fake)
    assert str(fake) in err and "safetensors" in err
    pickled = tmp_path / "open_clip_pytorch_model.bin"
    pickled.write_bytes(b"\x80\x04")
    err = convert_error(capsys, tmp_path, pickled)
    assert str(pickled) in err and "pickle" in err


def test_unsupported_config_field_is_named(tmp_path, capsys):
    cfg = json.loads(CONFIG.read_text())
    cfg["text_cfg"]["hf_model_name"] = "xlm-roberta-base"
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    err = convert_error(capsys, tmp_path, WEIGHTS, config=path)
    assert "text_cfg.hf_model_name" in err
