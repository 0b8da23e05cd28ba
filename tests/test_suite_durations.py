"""bench/suite_durations.py: reads pytest's --durations rows and rewrites only its own section."""
import importlib.util
import os

from tests import cli

spec = importlib.util.spec_from_file_location(
    "suite_durations", os.path.join(cli.ROOT, "bench", "suite_durations.py"))
durations = importlib.util.module_from_spec(spec)
spec.loader.exec_module(durations)

LOG = """
============================= slowest 3 durations ==============================
285.02s call     tests/test_flowsep_spec.py::test_flowsep_spec_trains_evaluates_and_separates
12.50s setup    tests/test_resume.py::test_kill9_then_resume_is_bitwise_exact
0.75s call     tests/test_ties.py::test_x[a b]
================= 808 passed, 2 skipped in 2329.40s (0:38:49) ==================
"""


def test_rows_and_closing_line_are_read():
    rows, final, seconds = durations.parse(LOG)
    assert rows[0] == (285.02, "call",
                       "tests/test_flowsep_spec.py::test_flowsep_spec_trains_evaluates_and_separates")
    assert rows[2] == (0.75, "call", "tests/test_ties.py::test_x[a b]")
    assert final == "808 passed, 2 skipped" and seconds == 2329.40


def test_the_section_is_replaced_and_the_rest_kept(tmp_path):
    notes = tmp_path / "NOTES.md"
    notes.write_text("# notes\n\nbefore\n")
    rows, final, seconds = durations.parse(LOG)
    durations.write(durations.summary(rows, final, seconds, "pytest -n 2", 2), str(notes))
    first = notes.read_text()
    assert first.startswith("# notes\n\nbefore\n") and "| 285.0 | call |" in first
    assert "0.75" not in first                         # only the top 2 rows
    durations.write(durations.summary(rows[2:], final, seconds, "pytest -n 2", 2), str(notes))
    second = notes.read_text()
    assert "| 285.0 |" not in second and "| 0.8 | call |" in second
    assert second.count(durations.BEGIN) == 1 and second.startswith("# notes\n\nbefore\n")
