"""Spec parsing and validation: every mistake is caught at start and names the fix."""
import json
import re
import os
import subprocess
import sys

import ml_collections as mlc
import pytest

from xmodal.core import spec as spec_lib
from xmodal.core.registry import SpecError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _minimal(**over):
    c = spec_lib.base()
    c.model = dict(name="two_tower", embed_dim=8,
                   towers=dict(image=dict(name="vit", patch_size=4, width=8, depth=1,
                                          num_heads=2),
                               text=dict(name="text_transformer", width=8, depth=1,
                                         num_heads=2)))
    c.objective = dict(name="clip")
    for k, v in over.items():
        c[k] = v
    return c


def test_parse_arg_types_and_flags():
    a = spec_lib.parse_arg("runlocal,batch=64,lr=0.5,name=x", runlocal=False, batch=0, lr=0.1,
                           name="")
    assert a.runlocal is True and a.batch == 64 and a.lr == 0.5 and a.name == "x"
    assert spec_lib.parse_arg(None, runlocal=False).runlocal is False


def test_parse_arg_unknown_lists_valid():
    with pytest.raises(SpecError, match="runlokal.*valid: batch, runlocal"):
        spec_lib.parse_arg("runlokal", runlocal=False, batch=0)


def test_validate_fills_defaults_and_promotes_int_to_float():
    c = _minimal()
    c.optim.lr = 1  # an int where the schema has a float
    out = spec_lib.validate(c)
    assert out.optim.lr == 1.0 and isinstance(out.optim.lr, float)
    assert out.train.keep_ckpts == 3  # default
    with pytest.raises(AttributeError):
        out.new_key = 1  # validated specs are locked


def test_unknown_key_lists_valid_keys():
    c = _minimal()
    c.train.stpes = 10
    with pytest.raises(SpecError, match=r"'train.stpes'.*valid keys at train:.*steps"):
        spec_lib.validate(c)
    c = _minimal()
    c.trian = mlc.ConfigDict({"steps": 1})
    with pytest.raises(SpecError, match=r"'trian'.*top level.*train"):
        spec_lib.validate(c)


def _with(path, value):
    d = _minimal().to_dict()
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return mlc.ConfigDict(d)


def test_wrong_type_names_field():
    # A spec written from scratch (not from base()) is only type-checked by validate.
    with pytest.raises(SpecError, match=r"'train.steps' must be int"):
        spec_lib.validate(_with(("train", "steps"), "ten"))
    with pytest.raises(SpecError, match=r"'train.check_finite' must be a bool"):
        spec_lib.validate(_with(("train", "check_finite"), 1))
    with pytest.raises(SpecError, match=r"'data' must be a mapping"):
        spec_lib.validate(_with(("data",), 3))


def test_missing_and_unknown_components():
    c = spec_lib.base()
    c.objective = dict(name="clip")
    with pytest.raises(SpecError, match=r"spec needs 'model'.*two_tower"):
        spec_lib.validate(c)
    c = _minimal(objective=dict(name="clap"))
    with pytest.raises(SpecError, match=r"unknown objective 'clap'.*clip.*siglip"):
        spec_lib.validate(c)


def test_data_transform_defaults_and_is_checked():
    out = spec_lib.validate(_minimal())
    assert out.data.transform.name == "image_text"
    assert spec_lib.base().data.transform.name == "image_text"
    c = _minimal()
    c.data.transform = dict(name="image_text", imag_size=16)
    with pytest.raises(SpecError, match=r"data.transform 'image_text' has no argument\(s\) "
                                        r"imag_size; valid keys: image_size"):
        spec_lib.validate(c)
    c = _minimal()
    c.data.transform = dict(name="image_txt")
    with pytest.raises(SpecError, match=r"unknown transform 'image_txt'.*image_text"):
        spec_lib.validate(c)


def test_component_kwargs_checked_recursively():
    c = _minimal()
    c.objective.rnig = True
    with pytest.raises(SpecError, match=r"objective 'clip' has no argument\(s\) rnig; valid keys: ring"):
        spec_lib.validate(c)
    c = _minimal()
    c.model.towers.image.widht = 8
    with pytest.raises(SpecError,
                       match=r"model.towers.image 'vit' has no argument\(s\) widht.*width"):
        spec_lib.validate(c)


def test_multistage_validates_each_stage():
    s1, s2 = _minimal(), _minimal()
    s2.train.stepz = 1
    c = mlc.ConfigDict({"stages": {"a": s1.to_dict(), "b": s2.to_dict()}, "seed": 3})
    with pytest.raises(SpecError, match=r"'stages.b.train.stepz'"):
        spec_lib.validate(c)
    c = mlc.ConfigDict({"stages": {"a": s1.to_dict(), "b": _minimal().to_dict()}})
    out = spec_lib.validate(c)
    assert [n for n, _ in spec_lib.stages_of(out)] == ["a", "b"]
    assert out.stages.b.train.steps == 1000
    # The top-level seed shifts each stage's own seed.
    c.stages.b.seed = 5
    c.seed = 2
    seeded = spec_lib.validate(c)
    assert (seeded.stages.a.seed, seeded.stages.b.seed) == (2, 7)
    # Run order is the spec's 'order', not the (sorted) key order of a ConfigDict.
    c = mlc.ConfigDict({"stages": {"vae": s1.to_dict(), "flow": s1.to_dict(),
                                   "eval": s1.to_dict()}, "order": ["vae", "flow", "eval"]})
    assert [n for n, _ in spec_lib.stages_of(spec_lib.validate(c))] == ["vae", "flow", "eval"]
    c.order = ["vae", "eval"]
    with pytest.raises(SpecError, match=r"'order'.*must list each stage once"):
        spec_lib.validate(c)


def test_spec_files_load_and_validate():
    for name in ("clip", "siglip"):
        for arg in ("", ":runlocal", ":runlocal,batch=64,steps=7"):
            out = spec_lib.validate(spec_lib.load(os.path.join(ROOT, "specs", name + ".py") + arg))
            if "steps=7" in arg:
                assert out.train.steps == 7 and out.data.batch_size == 64
    sig = spec_lib.validate(spec_lib.load(os.path.join(ROOT, "specs/siglip.py:runlocal")))
    assert sig.objective.name == "siglip" and sig.model.bias_init == -10.0


def test_stage_references_resolve_anywhere_in_a_stage():
    from xmodal.core.stages import resolve_refs as _resolve_stage_refs
    stage = spec_lib.validate(_minimal(init_from="stage:vae"))
    stage = mlc.ConfigDict(stage.to_dict())
    stage.objective = dict(name="clip", extra=["stage:a", "x"], nested=dict(path="stage:b"))
    out = _resolve_stage_refs(stage, "/runs/w")
    assert out.init_from == "/runs/w/vae"
    assert list(out.objective.extra) == ["/runs/w/a", "x"]
    assert out.objective.nested.path == "/runs/w/b"
    assert out.resume == ""


def test_write_json_roundtrip(tmp_path):
    out = spec_lib.validate(_minimal())
    path = spec_lib.write_json(out, str(tmp_path))
    assert json.load(open(path))["model"]["towers"]["image"]["width"] == 8


def test_cli_rejects_unknown_override_before_running(tmp_path):
    workdir = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "xmodal.main", "--spec=specs/clip.py:runlocal",
         f"--workdir={workdir}", "--spec.train.stepz=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "stepz" in r.stderr
    assert not workdir.exists()  # nothing was written


def test_cli_reports_spec_error_with_valid_keys(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "xmodal.main", "--spec=specs/clip.py:runlocal",
         f"--workdir={tmp_path}/run", "--spec.objective.name=clap"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "unknown objective 'clap'" in r.stderr and "siglip" in r.stderr


def test_cli_rejects_unknown_mode_listing_the_valid_ones(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "xmodal.main", "--spec=specs/clip.py:runlocal",
         f"--workdir={tmp_path}/run", "--mode=seperate"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "unknown --mode='seperate'; valid: train, eval" in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, value, valid", [
    ("train.log_every", 0, ">= 1"), ("train.steps", -5, ">= 0"),
    ("train.ema_decay", 1.0, ">= 0 and < 1"), ("optim.b2", 1.5, ">= 0 and < 1"),
    ("optim.eps", 0.0, "> 0"), ("optim.grad_accum", 0, ">= 1"),
    ("data.num_workers", -1, ">= 0"), ("optim.schedule", "cosin", "one of 'cosine'"),
    ("sample.solver", "rk5", "one of '', 'euler'"),
])
def test_out_of_range_values_name_the_key_and_the_range(key, value, valid):
    c = _minimal()
    node, leaf = key.split(".")
    c[node][leaf] = value
    with pytest.raises(SpecError, match=f"'{key}' = {value!r} is out of range: it must be "
                                        f"{re.escape(valid)}"):
        spec_lib.validate(c)
    # In a multi-stage spec the key is named with its stage.
    multi = mlc.ConfigDict({"stages": {"a": _minimal()}})
    multi.stages.a[node][leaf] = value
    with pytest.raises(SpecError, match=f"'stages.a.{key}'"):
        spec_lib.validate(multi)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_out_of_every_range(value):
    # NaN compares false with every bound and inf passes a bound that is open at the top.
    c = _minimal()
    c.optim.lr = value
    with pytest.raises(SpecError, match=re.escape(
            f"'optim.lr' = {value!r} is out of range: it must be a finite number >= 0")):
        spec_lib.validate(c)


def test_in_range_edges_are_accepted():
    c = _minimal()
    c.train.steps, c.train.eval_every, c.optim.lr, c.train.ema_decay = 0, 0, 0.0, 0.999
    spec_lib.validate(c)
