"""The measured tables in the docs are the ones bench/tables.py renders from bench/*.json."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_tables():
    # bench/ is a folder of scripts, not a package: load the script by its path.
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "bench" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = _load_tables()


def test_every_marked_table_matches_its_json():
    files = tables.doc_files()
    stale = [f"{tables.display(path)}: {name}" for path, name in tables.stale_tables(files)]
    assert not stale, "regenerate with `python bench/tables.py`: " + ", ".join(stale)


def test_every_renderer_has_a_marked_table():
    # A deleted marker would otherwise leave its table hand-copied without anyone noticing.
    marked = {name for _, name in tables.marked_tables(tables.doc_files())}
    assert marked == set(tables.RENDERERS)


def test_data_renderer_rows():
    records = [{"dataset": "emoji", "workers": 0, "records_per_s": 2516.56},
               {"dataset": "emoji", "workers": 2, "records_per_s": 4913.64},
               {"dataset": "emoji_styles", "workers": 0, "records_per_s": 1534.78},
               {"dataset": "emoji_styles", "workers": 2, "records_per_s": 12581.39}]
    lines = tables.data_table(records).splitlines()
    assert lines[0] == "| dataset | 0 workers | 2 workers |"
    assert lines[2] == "| emoji | 2,517 | 4,914 |"
    assert lines[3] == "| emoji_styles (4 images/record) | 1,535 | 12,581 |"


def test_compile_renderer_row():
    report = {"target": "v5e:2x2", "stages": {"main": {
        "chips": 4, "batch": 2048, "trained_parameters": 1_270_000,
        "argument_bytes": 2**29, "temp_bytes": 3 * 2**30, "peak_bytes": 3.5 * 2**30,
        "hbm_bytes": 16 * 2**30, "flops_per_chip": 2.5e12, "roofline_seconds": 0.01234,
        "bound": "compute", "examples_per_second": 165964.4, "compile_seconds": 42.4}}}
    row = tables.compile_table([("`specs/x.py`", report)]).splitlines()[2]
    assert row == ("| `specs/x.py` | v5e:2x2 (4) | 2,048 | 1.3 M | 0.50 | 3.00 | 3.50 of 16 | "
                   "2.50 | 12.3 (compute-bound) | 165,964 | 42 |")


def test_check_names_a_stale_table(tmp_path, capsys):
    doc = tmp_path / "notes.md"
    doc.write_text("Prose.\n\n<!-- table: data -->\n| dataset | 0 workers |\n|---|---|\n"
                   "| emoji | 1 |\n<!-- /table -->\n\nMore prose.\n")
    assert tables.main(["--check", str(doc)]) == 1
    assert f"{doc}: table 'data' differs" in capsys.readouterr().out

    # Regenerating fixes it and leaves the prose around the markers alone.
    assert tables.main([str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("Prose.\n\n<!-- table: data -->\n| dataset | 0 workers | 2 workers |")
    assert text.endswith("<!-- /table -->\n\nMore prose.\n")
    assert tables.main(["--check", str(doc)]) == 0
