"""OpenClipart: public-domain SVG clip art with its uploaders' titles and keywords.

Debian ``openclipart-svg`` (``/usr/share/openclipart/svg/<category>/.../<name>.svg``, 8,121
paths). Labels come from each file's RDF metadata (``<cc:Work>``: ``dc:title``, the
``dc:subject`` bag of keywords, ``dc:description``, the creator's ``dc:title``). They are
web labels typed by uploaders: titles like "Armadillo" next to "Layer 1", keywords that
include the artist's own name. Kept as written (a webly-supervised benchmark), not cleaned.

The same drawing is often filed under two folders (``animals/x.svg`` and
``animals/amphibian/x.svg``, small edits apart) and 663 paths are symlinks, so items are
keyed by file name: one item per name, split by sha1(name) % 10 == 0 (test).

Every folder a drawing is filed in is kept (``folders``): the folder of each copy of its name
and of each symlink that points at it. The folder tree (``food/fruit``, ``animals/birds``,
``signs_and_symbols/flags``) was sorted by the archive's curators, not typed by the uploader,
so it is a label that neither the drawing's title nor its keywords were written from.
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import os
import xml.etree.ElementTree as ET
from typing import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder
from xmodal.data.sets.emoji import encode_png, split_of
from xmodal.data.sets.emoji_styles import square_on_white, svg_to_image

SVG_DIR = "/usr/share/openclipart/svg"

SKIP_SYMLINK = "symlink to another file of the package"
SKIP_DUPLICATE_NAME = "same file name in another folder (a copy of the drawing)"
SKIP_NO_TITLE = "no dc:title in the file's metadata"
SKIP_BAD_XML = "metadata not parseable as XML"

CARD: dict = {
    "title": "OpenClipart SVG drawings with uploader titles and keywords (noisy web labels)",
    "sources": "Debian openclipart-svg (version: dpkg -s openclipart-svg); rendered with "
               "resvg-py, cairosvg where resvg fails.",
    "licence": "Public domain (Open Clip Art Library)",
    "splits": "By file name: test = sha1(name) % 10 == 0; copies of a drawing in two "
              "folders share the name, so they cannot straddle the split.",
    "languages": "Mostly English; titles and keywords are whatever uploaders typed.",
    "skipped": (
        "Symlinks, second copies of a file name in another folder, files with no dc:title "
        "and files whose XML does not parse are counted in OpenclipartCatalog.skipped. "
        "The default config keeps every item (no cap: about 3 min to build on 2 cores); "
        "tiny keeps the first 40 in sha1(name) order. A drawing that neither resvg nor "
        "cairosvg can render, or that renders blank, is left out with a logged warning "
        "naming the file (web uploads include broken SVGs; stopping would make the set "
        "unbuildable); the built split sizes show the result."),
    "fields": {
        "image": "64 px RGB drawing (cropped to drawn pixels, padded square, over white)",
        "title": "dc:title of the work, e.g. 'Armadillo'",
        "keywords": "dc:subject keywords joined by ', ' (often include the artist's name)",
        "description": "dc:description, often empty",
        "creator": "the creator's dc:title",
        "category": "top-level folder, e.g. 'animals'",
        "folders": "every folder filing the drawing (its copies and the symlinks to it), "
                   "joined by ', ', e.g. 'animals, animals/amphibian'",
        "name": "file name without .svg (split key)",
    },
}


@dataclasses.dataclass(frozen=True)
class Clip:
    name: str
    path: str
    category: str
    title: str
    keywords: tuple[str, ...]
    description: str
    creator: str
    folders: tuple[str, ...] = ()   # every folder holding a copy or a symlink of it


@dataclasses.dataclass(frozen=True)
class OpenclipartCatalog:
    clips: tuple[Clip, ...]
    skipped: Mapping[str, int]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_metadata(path: str) -> dict:
    """title, keywords, description, creator from the file's ``<cc:Work>``.

    Matched by local name: files use both the old (web.resource.org/cc/) and the new
    (creativecommons.org/ns#) Creative Commons namespace.
    """
    work = next((el for el in ET.parse(path).iter() if _local(el.tag) == "Work"), None)
    out = {"title": "", "keywords": (), "description": "", "creator": ""}
    if work is None:
        return out
    for child in work:
        kind = _local(child.tag)
        if kind == "title":
            out["title"] = (child.text or "").strip()
        elif kind == "description":
            out["description"] = (child.text or "").strip()
        elif kind == "subject":
            out["keywords"] = tuple(
                li.text.strip() for li in child.iter() if _local(li.tag) == "li"
                and li.text and li.text.strip())
        elif kind == "creator":
            out["creator"] = next((t.text.strip() for t in child.iter()
                                   if _local(t.tag) == "title" and t.text), "")
    return out


def read_catalog(svg_dir: str | None = None) -> OpenclipartCatalog:
    root = svg_dir or sources.resolve_file(SVG_DIR)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"OpenClipart folder {root} is missing; install with: "
                                "apt-get install -y openclipart-svg")
    clips, seen, skipped = [], set(), collections.Counter()
    folders = collections.defaultdict(set)    # name -> folders filing a copy or a link of it
    for path in sorted(glob.glob(os.path.join(glob.escape(root), "**", "*.svg"),
                                 recursive=True)):
        name = os.path.basename(path)[:-len(".svg")]
        folder = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "/")
        if os.path.islink(path):
            # A link files its target in one more folder (the target may have another name).
            folders[os.path.basename(os.path.realpath(path))[:-len(".svg")]].add(folder)
            skipped[SKIP_SYMLINK] += 1
            continue
        folders[name].add(folder)
        if name in seen:
            skipped[SKIP_DUPLICATE_NAME] += 1
            continue
        seen.add(name)
        try:
            meta = read_metadata(path)
        except ET.ParseError:
            skipped[SKIP_BAD_XML] += 1
            continue
        if not meta["title"]:
            skipped[SKIP_NO_TITLE] += 1
            continue
        clips.append(Clip(name=name, path=path,
                          category=os.path.relpath(path, root).split(os.sep)[0], **meta))
    clips = [dataclasses.replace(c, folders=tuple(sorted(folders[c.name]))) for c in clips]
    return OpenclipartCatalog(clips=tuple(clips), skipped=dict(skipped))


def render(path: str, size: int) -> np.ndarray | None:
    """The drawing at ``size`` px, or None (warning logged) if it cannot be drawn."""
    try:
        image = square_on_white(svg_to_image(path=path, width=4 * size), size)
    except ValueError as e:
        logging.warning("openclipart: leaving out %s: %s", path, e)
        return None
    if image.min() > 245:
        logging.warning("openclipart: leaving out %s: renders blank", path)
        return None
    return image


@dataclasses.dataclass
class OpenclipartConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    max_items: int | None = None  # None: every item


class Openclipart(Builder):
    """TFDS builder ``xmodal_openclipart``."""

    name = "xmodal_openclipart"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "openclipart-svg with RDF titles and keywords.",
                     "1.1.0": "folders: every folder filing the drawing."}
    BUILDER_CONFIGS = [
        OpenclipartConfig(name="default", description="Every item."),
        OpenclipartConfig(name="tiny", description="40 items.", max_items=40),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        text = {k: tfds.features.Text() for k in
                ("title", "keywords", "description", "creator", "category", "name",
                          "folders")}
        return tfds.core.DatasetInfo(
            builder=self, description=CARD["title"] + ". " + CARD["splits"],
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                **text}),
            homepage="https://openclipart.org", license=CARD["licence"])

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # everything comes from the installed Debian package
        clips = list(read_catalog().clips)
        if self.builder_config.max_items is not None:
            # sha1 order, not folder order, so a capped set spans every category
            clips = sorted(clips, key=lambda c: hashlib.sha1(c.name.encode()).hexdigest())
            clips = clips[:self.builder_config.max_items]
        by_split: dict[str, list[Clip]] = {"train": [], "test": []}
        for c in clips:
            by_split[split_of(c.name)].append(c)
        return {split: self._generate_examples(items) for split, items in by_split.items()}

    def _generate_examples(self, clips: list[Clip]):
        size = self.builder_config.image_size
        for c in clips:
            image = render(c.path, size)
            if image is None:
                continue
            yield c.name, {"image": encode_png(image), "title": c.title,
                           "keywords": ", ".join(c.keywords), "description": c.description,
                           "creator": c.creator, "category": c.category, "name": c.name,
                           "folders": ", ".join(c.folders)}


for _config in ("default", "tiny"):
    sources.register(
        "openclipart" if _config == "default" else f"openclipart/{_config}",
        sources.DatasetEntry(Openclipart, _config, ("resvg-py", "cairosvg"),
                             ("resvg_py", "cairosvg"),
                             "drawings come from Debian openclipart-svg",
                             apt=("openclipart-svg", "libcairo2"), files=(SVG_DIR,)))
