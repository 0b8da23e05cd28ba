"""``--mode=compile``: the train step compiled by libtpu for a TPU topology from this CPU. The
report's memory is the state the spec says (Adam's two moments beside the parameters, on every
chip when replicated, a quarter when FSDP-sharded over 4), a step too big for the chip is an
error, and the sharding rules place the big matrices on that mesh as they say."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests import cli
from xmodal.core import compile as compile_lib

pytestmark = pytest.mark.skipif(
    not compile_lib.find_libtpu(),
    reason=f"libtpu could not be installed here (bash setup.sh puts it in {compile_lib.LIBTPU_DIR})")

SPEC = "specs/clip.py:runlocal"
# One-layer towers of width 64: libtpu compiles the runlocal towers in ~25 s, these in ~8;
# what is checked (the state's bytes against the parameter count, the mesh, the fit) does not
# depend on the depth, and at this width the state is still most of the step's arguments.
NARROW = tuple(f"--spec.model.towers.{tower}.depth=1" for tower in ("image", "text"))


def _compile(wd, *args, target="v5e:2x2"):
    cmd = [sys.executable, "-m", "xmodal.main", f"--spec={SPEC}", f"--workdir={wd}",
           "--mode=compile", f"--target={target}", *NARROW, *args]
    return subprocess.run(cmd, cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_compile_reports_the_replicated_state_per_chip_and_refuses_a_step_too_big(tmp_path):
    # Batch 8 (2 per chip), so that the state is most of the arguments at these widths.
    r = _compile(tmp_path, "--spec.data.batch_size=8")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.load(open(tmp_path / "compile_v5e_2x2.json"))["stages"]["main"]
    n = rep["trained_parameters"]
    assert rep["chips"] == 4 and rep["mesh"] == {"data": 4, "fsdp": 1, "model": 1}
    # Parameters + Adam's mu and nu, float32, whole on each chip (the default rule replicates).
    assert 12 * n <= rep["argument_bytes"] < 12 * n * 1.5
    assert rep["fits"] and rep["peak_bytes"] >= rep["argument_bytes"] - rep["alias_bytes"]
    assert rep["flops_per_chip"] > 0 and rep["roofline_seconds"] > 0
    assert rep["batch"] == 8
    assert rep["examples_per_second"] == pytest.approx(8 / rep["roofline_seconds"])
    assert "per chip" in r.stdout and "roofline" in r.stdout
    # libtpu's start-up pages (off a TPU VM) are kept in the workdir, not on the console, and
    # the persistent cache is not asked for programs it cannot load here.
    assert r.stderr.strip() == "", r.stderr[-2000:]
    assert "could not determine TPU" in (tmp_path / "libtpu.log").read_text()

    big = _compile(tmp_path / "big", "--spec.data.batch_size=65536")
    assert big.returncode != 0 and "the step does not fit" in big.stderr, big.stderr[-2000:]
    assert "Traceback" not in big.stderr
    rep = json.load(open(tmp_path / "big" / "compile_v5e_2x2.json"))["stages"]["main"]
    assert not rep["fits"] and rep["peak_bytes"] > rep["hbm_bytes"]


@pytest.mark.slow
def test_bad_targets_are_one_line(tmp_path):
    for args, message in (((), "needs --target"), (("--target=v9x:2x2",), "generations"),
                          (("--target=v5e:3x7",), "no such topology")):
        cmd = [sys.executable, "-m", "xmodal.main", f"--spec={SPEC}", f"--workdir={tmp_path}",
               "--mode=compile", *args]
        r = subprocess.run(cmd, cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True,
                           text=True, timeout=300)
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr[-2000:])
        assert "Traceback" not in r.stderr


FSDP = """
import json, sys
import jax
from xmodal.core import compile as compile_lib, parallel, spec as spec_lib, trainer
from xmodal.core import datasets as sources
from xmodal.core.registry import TRANSFORMS
devices, chip = compile_lib.topology_devices("v5e:2x2")
spec = spec_lib.load("specs/clip.py:runlocal")
spec.model.towers.image.depth = spec.model.towers.text.depth = 1   # as NARROW
spec.data.batch_size = 8    # 2 per chip: the arguments are the state and little else
spec.mesh = {"data": 1, "fsdp": 4, "model": 1}
spec.sharding.rules = [(r".*kernel", ("fsdp", None)), (r".*", ())]
spec = spec_lib.validate(spec)
rep = compile_lib.run(spec, sys.argv[1], "v5e:2x2", out=sys.argv[1] + "/fsdp.json")["main"]
mesh = parallel.make_mesh(spec.mesh, devices)
t = TRANSFORMS.build(spec.data.transform.name, **spec_lib.component_kwargs(spec.data.transform))
parts = trainer.step_parts(spec, mesh, t.map(sources.data_source("emoji", "train")[0]))
placed = {}
for (path, s), x in zip(jax.tree_util.tree_leaves_with_path(parts.state_shardings.params),
                        jax.tree.leaves(parts.abstract_state.params)):
    placed[parallel.path_str(path)] = ([a for a in s.spec], list(x.shape))
print(json.dumps({"report": rep, "placed": placed}))
"""


@pytest.mark.slow
def test_fsdp_rules_shard_the_kernels_on_the_pod_mesh_and_shrink_the_state(tmp_path):
    r = subprocess.run([sys.executable, "-c", FSDP, str(tmp_path)], cwd=cli.ROOT,
                       env=cli.env(devices=1), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    placed = out["placed"]
    # Every kernel whose first axis divides by the 4 FSDP devices is split along it; the rest
    # (biases, norms, embeddings) stay whole, as the rules say.
    kernels = {k: spec for k, (spec, shape) in placed.items()
               if k.endswith("kernel") and shape[0] % 4 == 0}
    assert len(kernels) > 10 and all(v[:1] == ["fsdp"] for v in kernels.values()), kernels
    assert all(not any(spec) for k, (spec, _) in placed.items() if not k.endswith("kernel"))
    rep = out["report"]
    # The state per chip as the rules place it (parameters, Adam's mu and nu: 12 bytes each, a
    # quarter of each split kernel) is in the arguments, and is well under the replicated 12 N.
    sharded = 12 * sum(np.prod(shape) / (4 if spec[:1] == ["fsdp"] else 1)
                       for spec, shape in placed.values())
    assert sharded <= rep["argument_bytes"] < 0.5 * 12 * rep["trained_parameters"]
