"""Command line for xmodal's datasets.

    python -m xmodal.data list                         # every dataset: prepared?, size, licence
    python -m xmodal.data prepare NAME [--install]     # build once into the data dir
    python -m xmodal.data show NAME [--split test] [--n 16] [--out FILE.png]
    python -m xmodal.data card NAME                    # the data card as Markdown
    python -m xmodal.data cards --out FILE.md          # all cards (regenerates DATA_CARDS.md)

Every command takes ``--data_dir`` (default ``$XMODAL_DATA_DIR`` or ``~/.cache/xmodal/datasets``).
Errors are one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
from typing import Sequence

from xmodal.data import cards, show, sources
from xmodal.registry import SpecError

EXIT_ERROR = 2


class CommandFailed(RuntimeError):
    """An install command run for ``prepare --install`` exited non-zero."""


class OneLineErrors(argparse.ArgumentParser):
    """Reports a bad command line in one line (argparse prints the usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"error: {message} (see: {self.prog} --help)\n")


def human_size(num_bytes: int) -> str:
    """Decimal units, as ``du --si`` prints them: 660.2 KB, 15.3 MB."""
    if num_bytes < 1000:
        return f"{num_bytes} B"
    size = num_bytes / 1000
    for unit in ("KB", "MB"):
        if size < 1000:
            return f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def licence_of(name: str, max_chars: int = 72) -> str:
    """The CARD's licence on one line, cut to ``max_chars`` (``card NAME`` has all of it)."""
    try:
        text = " ".join(str(cards.card_dict(name)["licence"]).split())
    except ValueError as e:
        return f"unknown ({e})"
    return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


def cmd_list(args: argparse.Namespace) -> int:
    """One line per dataset (name, prepared or not, size, licence), then what makes it ready."""
    print(f"data dir: {args.data_dir}")
    names = sorted(sources.DATASETS)
    width = max(len(n) for n in names)
    for name in names:
        prepared = cards.is_prepared(name, args.data_dir)
        size = human_size(cards.size_on_disk(name, args.data_dir)) if prepared else "-"
        print(f"{name:<{width}}  {'prepared' if prepared else 'not prepared':<12}  "
              f"{size:>8}  licence: {licence_of(name)}")
        if prepared:
            print(f"{'':<{width}}  ready")
            continue
        for command in commands_to_prepare(name):
            print(f"{'':<{width}}  $ {command}")
    return 0


def commands_to_prepare(name: str) -> list[str]:
    """The dataset's install commands if something it needs is missing, then the build."""
    try:
        sources.check_installed(name)
        install = []
    except sources.DataSourceMissing:
        install = sources.dataset_entry(name).install_commands()
    return install + [f"python -m xmodal.data prepare {name}"]


def missing_commands(name: str) -> list[str]:
    """Commands that install what dataset ``name`` lacks (pip into this interpreter)."""
    entry = sources.dataset_entry(name)
    commands = []
    if any(importlib.util.find_spec(m) is None for m in entry.modules):
        # `python -m pip` of this interpreter: a bare `pip` may belong to another Python.
        commands.append(shlex.join([sys.executable, "-m", "pip", "install", *entry.packages]))
    files_missing = any(not os.path.exists(sources.resolve_file(f)) for f in entry.files)
    # Without files to check, dpkg says whether the packages are in.
    if entry.apt and (files_missing or (not entry.files and any(
            cards.apt_version(p) == cards.NOT_INSTALLED for p in entry.apt))):
        commands.append("apt-get update && apt-get install -y " + " ".join(entry.apt))
    if any(not os.path.isdir(os.path.join(sources.npm_modules(), p)) for p in entry.npm):
        commands.append(shlex.join(["npm", "install", "--prefix", sources.npm_dir(),
                                    *entry.npm]))
    return commands


def run_command(command: str) -> None:
    print(f"$ {command}", flush=True)
    result = subprocess.run(command, shell=True, check=False)
    if result.returncode != 0:
        raise CommandFailed(f"install command failed with exit code {result.returncode}: "
                            f"{command}")


def cmd_prepare(args: argparse.Namespace) -> int:
    name = args.name
    sources.dataset_entry(name)  # unknown name: SpecError listing the valid ones
    if args.install:
        for command in missing_commands(name):
            run_command(command)
        importlib.invalidate_caches()  # so find_spec sees what pip just installed
    builder = sources.prepare(name, args.data_dir)
    counts = cards.split_counts(name, args.data_dir) or {}
    print(f"{name}: ready in {builder.data_path} ("
          + ", ".join(f"{split} {count}" for split, count in counts.items()) + ")")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    out = args.out or f"{args.name.replace('/', '-')}-{args.split}.png"
    sheet = show.write_contact_sheet(args.name, args.split, args.n, out, args.data_dir,
                                     args.caption)
    print(cards.card(args.name, args.data_dir))
    caption = sheet.fields.caption or "no caption field"
    picture = (f"image field '{sheet.fields.image}'" if sheet.fields.image
               else f"spectrogram of '{sheet.fields.audio}'")
    print(f"wrote {sheet.path}: {sheet.rows} x {sheet.cols} grid of {sheet.count} examples "
          f"of split {args.split!r} ({picture}, caption '{caption}'); font: {sheet.fonts}")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    print(cards.card(args.name, args.data_dir))
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    text = cards.all_cards(args.data_dir)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def parser() -> argparse.ArgumentParser:
    top = OneLineErrors(prog="python -m xmodal.data", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--data_dir", default=None,
                         help="dataset folder (default $XMODAL_DATA_DIR or "
                              "~/.cache/xmodal/datasets)")
        sub.set_defaults(func=func)
        return sub

    command("list", cmd_list, "every registered dataset and whether it is prepared")
    prepare = command("prepare", cmd_prepare, "build a dataset once into the data dir")
    prepare.add_argument("name")
    prepare.add_argument("--install", action="store_true",
                         help="first run the pip/apt/npm commands for what is missing")
    show_cmd = command("show", cmd_show, "write a contact sheet PNG and print the card")
    show_cmd.add_argument("name")
    show_cmd.add_argument("--split", default="test")
    show_cmd.add_argument("--n", type=int, default=16, help="examples on the sheet")
    show_cmd.add_argument("--out", default=None,
                          help="PNG path (default NAME-SPLIT.png, '/' in NAME as '-')")
    show_cmd.add_argument("--caption", default=None,
                          help="Text field to write under each picture (default: CARD['show'] "
                               "or the first Text feature)")
    card = command("card", cmd_card, "print a dataset's data card (Markdown)")
    card.add_argument("name")
    all_cards = command("cards", cmd_cards, "all data cards in one Markdown document")
    all_cards.add_argument("--out", default=None, help="Markdown file (default: stdout)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.data_dir = args.data_dir or sources.default_data_dir()
    try:
        return args.func(args)
    except (SpecError, sources.DataSourceMissing, CommandFailed, ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
