"""InstaRevive's pieces: the seeded degradation, the restoration transform, the U-Net's
zero-initialised control branch and the student that starts from a plain teacher, the Y-channel
metrics; and specs/instarevive.py end to end through the CLI (tiny)."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests import cli
from xmodal.core.registry import MODELS, TRANSFORMS
from xmodal.evaluate import heldout
from xmodal.projects.instarevive import degrade as deg
from xmodal.projects.instarevive.evaluator import psnr_ssim_y, y_channel


def _image(seed=0, size=32):
    """A smooth image with an edge: something blur, noise and JPEG visibly change."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    r = np.random.default_rng(seed)
    img = np.stack([128 + 100 * np.sin(6 * xx + r.uniform()), 255 * (yy > 0.5),
                    200 * xx * yy], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_degradation_is_fixed_per_record_and_degrades():
    img = _image()
    seed = deg.record_seed("grinning face")
    a, b = deg.degrade(img, 2, seed), deg.degrade(img, 2, seed)
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)                       # the same record, the same LQ
    other = deg.degrade(img, 2, deg.record_seed("thumbs up"))
    assert np.abs(other.astype(int) - a.astype(int)).max() > 0   # another record, another draw
    assert deg.record_seed("x", seed=1) != deg.record_seed("x", seed=0)
    # Degraded: below a plain bicubic down-and-up of the same image, which loses only detail.
    lq = deg.upsample(a, 32)
    plain = deg.upsample(np.asarray(Image.fromarray(img).resize((16, 16), Image.BICUBIC)), 32)
    assert _psnr(lq, img) < _psnr(plain, img) - 1.0
    assert _psnr(lq, img) > 10.0                              # but still the same picture
    with pytest.raises(ValueError, match="square uint8"):
        deg.degrade(img[:, :20], 2, seed)
    with pytest.raises(ValueError, match="dividing the size"):
        deg.degrade(img, 3, seed)


def test_restoration_transform_pairs_the_clean_image_with_its_fixed_degradation():
    t = TRANSFORMS.build("restoration", image_size=32, max_text_len=16, scale=2, seed=0)
    rec = {"image": _image(size=64), "name": b"grinning face", "group": 3, "base": b"1F600"}
    out = t.map(rec)
    assert out["image"].shape == out["lq"].shape == (32, 32, 3)
    assert out["lq_small"].shape == (16, 16, 3) and int(out["label"]) == 3
    np.testing.assert_array_equal(out["lq_small"], deg.degrade(
        out["image"], 2, deg.record_seed("grinning face", 0)))
    np.testing.assert_array_equal(out["lq"], deg.upsample(out["lq_small"], 32))
    assert t.tokenizer.decode(out["text"]) == "grinning face"
    # Its half of the held-out split: keyed by the emoji's base, as heldout.dev_half cuts it.
    salt = "restoration:"
    assert out["dev_half"] == heldout.dev_half([b"1F600"], salt)[0]
    assert t.map(dict(rec, base=b"1F601"))["dev_half"] == heldout.dev_half(["1F601"], salt)[0]
    with pytest.raises(KeyError, match="seed its degradation"):
        TRANSFORMS.build("restoration", seed_field="codepoints").map(rec)
    with pytest.raises(KeyError, match="dev or test half"):
        t.map({k: v for k, v in rec.items() if k != "base"})
    with pytest.raises(ValueError, match="dividing image_size"):
        TRANSFORMS.build("restoration", image_size=32, scale=3)


@pytest.mark.slow
def test_control_branch_starts_at_zero_and_student_starts_from_the_teacher():
    kw = dict(widths=(8, 16), num_heads=2, text_width=16, text_depth=1, text_max_len=8)
    plain, ctl = MODELS.build("unet", **kw), MODELS.build("unet", control=True, **kw)
    r = np.random.default_rng(0)
    x = jnp.asarray(r.normal(size=(2, 8, 8, 3)), jnp.float32)
    cond = jnp.asarray(r.normal(size=(2, 8, 8, 3)), jnp.float32)
    t, text = jnp.array([0.2, 0.7]), jnp.asarray(r.integers(3, 100, (2, 8)), jnp.int32)
    p_plain = plain.init(jax.random.key(0), x, t, cond, text)["params"]
    p_ctl = ctl.init(jax.random.key(1), x, t, cond, text)["params"]
    # A trained teacher's output convolution is not the zero it starts at.
    out = p_plain["out"]["kernel"]
    p_plain = dict(p_plain, out=dict(p_plain["out"], kernel=jnp.asarray(
        r.normal(size=out.shape) * 0.1, jnp.float32)))
    extra = set(p_ctl) - set(p_plain)
    assert extra and all(k.startswith("control_") for k in extra)
    # The student's own branch with the teacher's parameters everywhere else.
    merged = dict(p_ctl, **p_plain)
    v_plain = plain.apply({"params": p_plain}, x, t, cond, text)
    assert float(jnp.abs(v_plain).max()) > 1e-2
    np.testing.assert_allclose(ctl.apply({"params": merged}, x, t, cond, text), v_plain,
                               atol=1e-6)
    # The zero convolutions are what hides it: open one and the branch changes the velocity.
    opened = jax.tree_util.tree_map_with_path(
        lambda k, v: v + 0.1 if "control_zero_0" in jax.tree_util.keystr(k) else v, merged)
    assert float(jnp.abs(ctl.apply({"params": opened}, x, t, cond, text) - v_plain).max()) > 1e-3


def test_y_channel_metrics_follow_their_formulas():
    clean = np.stack([_image(s) for s in range(3)])
    noisy = np.clip(clean.astype(int) + np.random.default_rng(0).integers(-20, 21, clean.shape),
                    0, 255).astype(np.uint8)
    y = np.asarray(y_channel(clean))[..., 0] * 255.0
    np.testing.assert_allclose(y[0, 0, 0], 16 + (65.481 * clean[0, 0, 0, 0] + 128.553 *
                               clean[0, 0, 0, 1] + 24.966 * clean[0, 0, 0, 2]) / 255, rtol=1e-5)
    assert 16 - 1e-3 <= y.min() and y.max() <= 235 + 1e-3
    psnr, ssim = psnr_ssim_y(noisy, clean)
    yn = np.asarray(y_channel(noisy))[..., 0]
    want = [10 * np.log10(1.0 / np.mean((yn[i] - y[i] / 255.0) ** 2)) for i in range(3)]
    np.testing.assert_allclose(psnr, want, rtol=1e-4)
    p_same, s_same = psnr_ssim_y(clean, clean)
    np.testing.assert_allclose(s_same, 1.0, atol=1e-5)
    assert np.all(ssim < 0.99) and np.all(ssim > 0.1)


@pytest.mark.slow
def test_instarevive_spec_trains_distils_and_writes_the_table(tmp_path):
    stages = "teacher,regressor,dmd_dynamic,eval"
    cmd = [sys.executable, "-m", "xmodal.main", "--spec=specs/instarevive.py:tiny,tower=false",
           f"--workdir={tmp_path}", f"--stages={stages}"]
    out = subprocess.run(cmd, cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    # The dynamic-control student logged its gap and state at its last step (2 steps, logged
    # at step 2): with the tiny spec's decay 0.9, gap_ema_2 = 0.9 g_1 + 0.1 g_2, so g_1 is read
    # back from the log, and gap_peak is the larger of g_1 and gap_ema_2.
    rows = [json.loads(line) for line in open(tmp_path / "dmd_dynamic" / "metrics.jsonl")]
    (last,) = [r for r in rows if "train/fake_score/clean_gap" in r]
    g2, ema = last["train/fake_score/clean_gap"], last["train/state/gap_ema"]
    g1 = (ema - 0.1 * g2) / 0.9
    assert g1 > 0 and g2 > 0
    assert last["train/state/gap_peak"] == pytest.approx(max(g1, ema), rel=1e-5)
    # Step 2's noise range follows step 1's state (gap_ema = gap_peak = g_1): the full range.
    assert last["train/generator/t_low"] == pytest.approx(0.02, abs=1e-6)
    table = json.loads((tmp_path / "eval" / "restoration_table.json").read_text())
    # The spec scores the test half of the 16 held-out images (the dev half chose settings).
    assert table["half"] == "test" and 0 < table["examples"] < 16
    assert "held-out test-half images" in table["notes"][0]
    names = list(table["rows"])
    assert names[:3] == ["degraded input (nearest)", "bicubic",
                         "supervised one-step regressor (L2)"]
    assert "teacher, 2 Euler steps" in names and "DMD + dynamic control (one step)" in names
    assert not any(n.startswith("SiD") for n in names)        # not trained: said in the notes
    assert any("SiD" in n and "missing" in n for n in table["notes"])
    for name, r in table["rows"].items():
        assert np.isfinite(r["psnr_y"]) and 0 < r["psnr_y"] < 100, name
        assert -1 <= r["ssim_y"] <= 1, name
    assert table["rows"]["teacher, 2 Euler steps"]["nfe"] == 2
    assert table["rows"]["DMD + dynamic control (one step)"]["ms_per_image"] > 0
    sheet = Image.open(tmp_path / "eval" / "contact_sheet_0.png")
    assert sheet.size[0] > 4 * 32 and sheet.size[1] > 8 * 32   # 4 columns, 8 rows
    plot = tmp_path / "eval" / "dynamic_control_dmd_dynamic.png"
    assert Image.open(plot).size == (720, 384)    # 6 x 3.2 in at 120 dpi
    assert any("dynamic_control_dmd_dynamic.png" in n for n in table["notes"])

    # --mode=sample on the student: images from the held-out degraded inputs, captions replaced.
    out = tmp_path / "samples"
    cmd = [sys.executable, "-m", "xmodal.main", "--spec=specs/instarevive.py:tiny,tower=false",
           f"--workdir={tmp_path}", "--mode=sample", "--stage=dmd_dynamic", f"--out={out}",
           "--prompt=grinning face", "--spec.stages.dmd_dynamic.sample.num=6"]
    r = subprocess.run(cmd, cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    x = np.load(out / "samples.npy")
    assert x.shape == (6, 32, 32, 3) and np.all(np.isfinite(x))
    assert Image.open(out / "grid.png").size == (3 * 34 + 2, 2 * 34 + 2)   # 3 x 2 tiles
    lines = (out / "conditions.txt").read_text().splitlines()
    assert len(lines) == 6 and all("'grinning face'" in line for line in lines)


def test_the_dev_sweep_picks_by_dev_distance_and_adopts_the_stage_with_its_paths_rewritten(
        tmp_path):
    from xmodal.projects.instarevive import dev_sweep
    points = [{"point": "a", "dev_fd": 0.20, "dev_psnr_y": 19.0},
              {"point": "b", "dev_fd": 0.10, "dev_psnr_y": 18.0},
              {"point": "c", "dev_fd": 0.10, "dev_psnr_y": 18.5}]
    assert dev_sweep.best(points)["point"] == "c"          # lowest distance, then higher PSNR
    stage = tmp_path / "dev_sweep" / "c" / "dmd"
    (stage / "checkpoints" / "200").mkdir(parents=True)
    teacher = tmp_path / "dev_sweep" / "c" / "teacher"
    (stage / "spec.json").write_text(json.dumps({"objective": {"teacher_from": str(teacher)}}))
    dev_sweep.adopt(str(tmp_path), {"point": "c", "stage": "dmd"})
    adopted = json.loads((tmp_path / "dmd" / "spec.json").read_text())
    assert adopted["objective"]["teacher_from"] == str(tmp_path / "teacher")
    assert (tmp_path / "dmd" / "checkpoints" / "200").is_dir()
    # a reflow point brings both its stages, one_step reading the adopted reflow
    point = tmp_path / "dev_sweep" / "r"
    for stage, source in (("reflow", "teacher"), ("one_step", "reflow")):
        (point / stage).mkdir(parents=True)
        (point / stage / "spec.json").write_text(
            json.dumps({"objective": {"teacher_from": str(point / source)}}))
    dev_sweep.adopt(str(tmp_path), {"point": "r", "stage": "one_step",
                                    "stages": ["reflow", "one_step"]})
    one_step = json.loads((tmp_path / "one_step" / "spec.json").read_text())
    assert one_step["objective"]["teacher_from"] == str(tmp_path / "reflow")
    assert (tmp_path / "reflow" / "spec.json").is_file()


def test_the_dev_sweep_names_points_and_passes_each_familys_learning_rate():
    from xmodal.projects.instarevive import dev_sweep
    # points measured before a rate was searched keep their folders
    assert dev_sweep.point_name("dmd", 1e-4, regression=0.25) == "dmd_regression_0.25"
    assert dev_sweep.point_name("dmd", 3e-4, regression=0.25) == "dmd_regression_0.25_lr_0.0003"
    assert dev_sweep.point_name("dmd_dynamic", 1e-4, regression=0.25, decay=0.98, floor=0.5) \
        == "dynamic_regression_0.25_decay_0.98_floor_0.5"
    assert dev_sweep.point_name("sid", 1e-4) == "sid"
    assert dev_sweep.point_name("reflow", 3e-4) == "reflow"          # the spec's reflow rate
    assert dev_sweep.point_name("reflow", 1e-4) == "reflow_lr_0.0001"
    spec, arg = dev_sweep.spec_for("tiny", 0.25, lr=3e-4)
    assert "dmd_lr=0.0003" in arg and "half=dev" in arg
    assert spec.stages.dmd.optim.lr == spec.stages.dmd_dynamic.optim.lr == 3e-4
    assert spec.stages.sid.optim.lr == 1e-4 and spec.stages.reflow.optim.lr == 3e-4
    # Every rate is passed explicitly: a point means the same whatever the spec's defaults
    # became after the sweep chose them (sid_lr and reflow_lr did change).
    spec, arg = dev_sweep.spec_for("tiny", 0.25)
    assert "dmd_lr=0.0001,sid_lr=0.0001,reflow_lr=0.0003" in arg
    assert (spec.stages.dmd.optim.lr, spec.stages.sid.optim.lr,
            spec.stages.reflow.optim.lr) == (1e-4, 1e-4, 3e-4)
    from xmodal.core import spec as spec_lib
    default = spec_lib.load(os.path.join(cli.ROOT, "specs/instarevive.py") + ":tiny")
    assert (default.stages.sid.optim.lr, default.stages.one_step.optim.lr) == (1e-3, 3e-3)
    spec, arg = dev_sweep.spec_for("tiny", sid_lr=3e-5, reflow_lr=1e-3)
    assert "sid_lr=3e-05" in arg and "reflow_lr=0.001" in arg
    assert spec.stages.sid.optim.lr == 3e-5 and spec.stages.dmd.optim.lr == 1e-4
    # one rate for the reflowed flow and its one-step distillation
    assert spec.stages.reflow.optim.lr == spec.stages.one_step.optim.lr == 1e-3


def test_the_dev_sweep_reads_back_a_point_scored_after_its_training(tmp_path):
    import time
    from xmodal.projects.instarevive import dev_sweep
    table, stage = tmp_path / "eval" / "restoration_table.json", tmp_path / "sid"
    assert not dev_sweep.scored_after_training(str(table), str(stage))      # nothing yet
    (stage / "checkpoints" / "200").mkdir(parents=True)
    table.parent.mkdir()
    table.write_text("{}")
    now = time.time()
    os.utime(stage / "checkpoints" / "200", (now - 60, now - 60))
    assert dev_sweep.scored_after_training(str(table), str(stage))
    os.utime(stage / "checkpoints" / "200", (now + 60, now + 60))        # retrained since
    assert not dev_sweep.scored_after_training(str(table), str(stage))
