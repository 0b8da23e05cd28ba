import hashlib
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import openclipart as oc



pytestmark = skip_unless_installed("openclipart/tiny")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_all("openclipart/tiny", str(tmp_path_factory.mktemp("data")))


def test_split_by_file_name(records):
    assert records["train"] and records["test"]
    names = {s: {r["name"] for r in rs} for s, rs in records.items()}
    assert not names["train"] & names["test"]
    for split, rs in names.items():
        for name in rs:
            assert (int(hashlib.sha1(name).hexdigest(), 16) % 10 == 0) == (split == "test")
    assert len(names["train"]) + len(names["test"]) <= 40


def test_titles_match_the_svg_metadata(records):
    root = sources.resolve_file(oc.SVG_DIR)
    for r in records["train"] + records["test"]:
        path = os.path.join(root, r["category"].decode())
        matches = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs
                   if f == r["name"].decode() + ".svg" and not os.path.islink(os.path.join(d, f))]
        assert matches, r["name"]
        text = open(sorted(matches)[0], encoding="utf-8", errors="replace").read()
        title = r["title"].decode()
        assert title and f">{title}</" in text.replace("&amp;", "&")


def test_images_are_drawn(records):
    for r in records["train"] + records["test"]:
        image = r["image"]
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.min() < 246, r["name"]


def test_catalog_dedupes_copies_and_counts_skips():
    catalog = oc.read_catalog()
    names = [c.name for c in catalog.clips]
    assert len(names) == len(set(names)) > 6000
    assert catalog.skipped[oc.SKIP_SYMLINK] > 0
    assert catalog.skipped[oc.SKIP_DUPLICATE_NAME] > 0
    assert len(catalog.clips) + sum(catalog.skipped.values()) == 8121
    assert sum(bool(c.keywords) for c in catalog.clips) > 0.9 * len(catalog.clips)


def test_folders_file_each_drawing_where_its_copies_and_links_are(records):
    root = sources.resolve_file(oc.SVG_DIR)
    by_name = {c.name: c for c in oc.read_catalog().clips}
    links = 0
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            target = os.path.basename(os.path.realpath(path))[:-len(".svg")]
            if target in by_name:    # a copy or a link files the drawing in this folder
                assert os.path.relpath(d, root) in by_name[target].folders, path
                links += os.path.islink(path) and target != f[:-len(".svg")]
    assert links > 100        # links under another name (Debian's deduplicated copies)
    for c in by_name.values():
        assert c.category in {f.split("/")[0] for f in c.folders}, c.name
    for r in records["train"] + records["test"]:
        assert r["folders"].decode() == ", ".join(by_name[r["name"].decode()].folders)


def test_read_metadata_old_and_new_cc_namespaces(tmp_path):
    for cc in ("http://web.resource.org/cc/", "http://creativecommons.org/ns#"):
        path = tmp_path / "x.svg"
        path.write_text(
            '<svg xmlns="http://www.w3.org/2000/svg" '
            f'xmlns:cc="{cc}" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><metadata><rdf:RDF>'
            '<cc:Work><dc:title>Armadillo</dc:title><dc:description>d</dc:description>'
            '<dc:subject><rdf:Bag><rdf:li>animal</rdf:li><rdf:li> mammal </rdf:li>'
            '</rdf:Bag></dc:subject><dc:creator><cc:Agent><dc:title>A. R.</dc:title>'
            '</cc:Agent></dc:creator></cc:Work></rdf:RDF></metadata></svg>')
        assert oc.read_metadata(str(path)) == {
            "title": "Armadillo", "keywords": ("animal", "mammal"), "description": "d",
            "creator": "A. R."}


def test_unrenderable_svg_is_left_out_with_its_name(tmp_path, caplog):
    broken = tmp_path / "broken.svg"
    broken.write_text("<svg")
    with caplog.at_level("WARNING"):
        assert oc.render(str(broken), 32) is None
    assert "broken.svg" in caplog.text


def test_bad_xml_raises_parse_error(tmp_path):
    broken = tmp_path / "broken.svg"
    broken.write_text("<svg")
    with pytest.raises(ET.ParseError):
        oc.read_metadata(str(broken))
