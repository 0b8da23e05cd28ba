"""``python -m xmodal.convert <format> ...``: see ``xmodal.convert``. Errors are one line on
stderr and exit code 2."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from xmodal.convert import ConvertError

EXIT_ERROR = 2


class OneLineErrors(argparse.ArgumentParser):
    """Reports a bad command line in one line (argparse prints the usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"error: {message} (see: {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = OneLineErrors(prog="python -m xmodal.convert",
                      description="Convert another framework's checkpoint to an xmodal stage.")
    sub = p.add_subparsers(dest="format", required=True, parser_class=OneLineErrors)
    oc = sub.add_parser("open_clip", help="an open_clip CLIP (ViT image tower, OpenAI layout)")
    oc.add_argument("--weights", required=True, help="open_clip_model.safetensors")
    oc.add_argument("--config", required=True, help="open_clip_config.json (or a "
                    "model_configs/*.json)")
    oc.add_argument("--vocab", default="", help="bpe_simple_vocab_16e6.txt.gz (default: the "
                    "one next to --weights)")
    oc.add_argument("--out", required=True, help="folder to write (new or empty)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.format == "open_clip":
            from xmodal.convert import open_clip
            summary = open_clip.convert(args.weights, args.config, args.out, vocab=args.vocab)
            print(open_clip.describe(summary))
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
