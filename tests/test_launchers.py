"""The top-level launchers: tpu/launch.sh and the Colab notebook point at what exists."""
import json
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_tpu_launcher_parses_and_rejects_missing_arguments():
    script = ROOT / "tpu" / "launch.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    out = subprocess.run(["bash", str(script), "only-a-name"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage:" in out.stderr
    out = subprocess.run(["bash", str(script), "n", "z", "specs/no_such.py", "w"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no spec file specs/no_such.py" in out.stderr


def test_colab_notebook_is_a_notebook_whose_specs_exist():
    nb = json.loads((ROOT / "colab" / "quickstart.ipynb").read_text())
    assert nb["nbformat"] == 4
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    specs = re.findall(r"--spec=(specs/[\w.]+\.py)", code)
    assert specs and all((ROOT / s).is_file() for s in specs)
    assert "xmodal.main" in code
