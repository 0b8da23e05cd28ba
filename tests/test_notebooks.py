"""The colab/ notebooks executed headless (nbclient, a real IPython kernel) at small sizes: every
cell must run without an error, and the cells' own checks hold."""
import json
import os

import pytest

from tests import cli

# Training steps per notebook: enough that every cell has a trained workdir to read (the
# distillation notebook's DMD stage, half of them, updates its generator on step 5); what the
# cells show at these sizes is not checked for quality.
NOTEBOOKS = {"quickstart.ipynb": 5, "distillation.ipynb": 10}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_every_cell(name, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    for k, v in cli.env(devices=1).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("XMODAL_ROOT", cli.ROOT)
    monkeypatch.setenv("XMODAL_NOTEBOOK_STEPS", str(NOTEBOOKS[name]))
    monkeypatch.setenv("XMODAL_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
    nb = nbformat.read(os.path.join(cli.ROOT, "colab", name), as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stripped in git
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, "the notebook shows no picture"
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "xmodal at " + cli.ROOT in text


def test_notebooks_are_stripped_and_name_specs_that_exist():
    for name in NOTEBOOKS:
        nb = json.load(open(os.path.join(cli.ROOT, "colab", name)))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)
        for spec in ("specs/clip.py", "specs/eight_gaussians.py"):
            if spec in "".join("".join(c["source"]) for c in code):
                assert os.path.isfile(os.path.join(cli.ROOT, spec))
