"""Measured tables of the docs, rendered from the benchmarks' JSON reports.

    python bench/tables.py            # rewrite every marked table in place
    python bench/tables.py --check    # exit 1 and name each table that differs from its JSON

A generated table sits between two marker comments in a markdown file:

    <!-- table: data -->
    | dataset | 0 workers | 2 workers |
    ...
    <!-- /table -->

The name after ``table:`` is a key of ``RENDERERS`` below. Everything outside the markers is
left alone, so the prose around a table stays hand-written. Tables whose numbers come from a
training run's workdir (``runs/``, not kept in the repository) have no JSON here and stay
hand-written, without markers.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

# The files searched for markers when none are named on the command line.
DOCS = ("README.md", "WORKSPACE_NOTES.md", "xmodal/projects/*/README.md")

# Markers stand on lines of their own, so a marker quoted inside prose is not one.
MARKER = re.compile(r"^(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)^(<!-- /table -->)$",
                    re.DOTALL | re.MULTILINE)

MINUS = "\u2212"  # the docs print negative numbers with a real minus sign
GIB = 2**30


def load(relative: str):
    with open(BENCH / relative) as f:
        return json.load(f)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def thousands(x: float) -> str:
    return f"{x:,.0f}"


def signed(x: float, digits: int = 2) -> str:
    text = f"{x:+.{digits}f}"
    return text.replace("-", MINUS)


# --- Pod compile: bench/compile.sh -> bench/results_compile/<name>.json ----------------------

# The rows of bench/compile.sh, in its order; the JSON reports do not name the spec they came
# from, so the label of each row lives here.
COMPILE_ROWS = (
    ("clip_v5e-16", "`specs/clip.py` (ring loss)"),
    ("siglip_v5e-16", "`specs/siglip.py`"),
    ("clip_ring_32k_v5e-256", "`specs/clip.py:batch=32768` (ring)"),
    ("clip_gathered_32k_v5e-256", "same, `objective.ring=False` (gathered)"),
)


def compile_table(reports: list[tuple[str, dict]]) -> str:
    """``reports``: (row label, the JSON that ``--mode=compile`` wrote) per row."""
    header = ["spec", "target (chips)", "global batch", "trained params", "arguments GiB",
              "temporaries GiB", "peak GiB per chip", "TFLOP per chip per step",
              "roofline ms", "examples/s (estimate)", "compile s"]
    rows = []
    for label, report in reports:
        main = report["stages"]["main"]
        rows.append([
            label,
            f"{report['target']} ({main['chips']})",
            thousands(main["batch"]),
            f"{main['trained_parameters'] / 1e6:.1f} M",
            f"{main['argument_bytes'] / GIB:.2f}",
            f"{main['temp_bytes'] / GIB:.2f}",
            f"{main['peak_bytes'] / GIB:.2f} of {main['hbm_bytes'] / GIB:.0f}",
            f"{main['flops_per_chip'] / 1e12:.2f}",
            f"{main['roofline_seconds'] * 1e3:.1f} ({main['bound']}-bound)",
            thousands(main["examples_per_second"]),
            f"{main['compile_seconds']:.0f}",
        ])
    return markdown_table(header, rows)


def render_compile() -> str:
    return compile_table([(label, load(f"results_compile/{name}.json"))
                          for name, label in COMPILE_ROWS])


# --- Training speed: bench/train.py --------------------------------------------------------

def train_speed_table(result: dict) -> str:
    """``result``: the JSON that ``bench/train.py --out`` wrote."""
    batch = result["batch"]
    rows = [
        ["bare compiled step, device-resident batch",
         f"{result['bare_steps_per_s']:.2f}", thousands(result["bare_examples_per_s"]), "—"],
        # bench/train.py stores no examples/s for this loop; steps/s times the batch is the
        # same product it stores for the grain loop.
        ["trainer loop, batches already in host memory (its own overhead)",
         f"{result['trainer_steps_per_s']:.2f}",
         thousands(result["trainer_steps_per_s"] * batch),
         f"{signed(result['trainer_overhead_pct'], 1)} %"],
        ["trainer loop on the real grain pipeline (2 workers decoding on the same 2 cores)",
         f"{result['loop_steps_per_s']:.2f}", thousands(result["loop_examples_per_s"]),
         f"{signed(result['loop_overhead_pct'], 1)} %"],
        ["input pipeline alone (decode, resize, tokenize, batch; 2 workers)",
         "—", thousands(result["data_examples_per_s"]),
         f"{result['data_over_consumption']:.1f}× what the loop consumes"],
    ]
    return markdown_table(["measurement", "steps/s", "examples/s", "vs bare step"], rows)


def render_clip_train_speed() -> str:
    return train_speed_table(load("results_clip_runlocal_cpu.json"))


# --- Data pipelines: bench/data.py ---------------------------------------------------------

# What a reader needs to compare a row, not measured by the bench.
DATASET_NOTES = {"emoji_styles": "4 images/record"}


def data_table(records: list[dict]) -> str:
    """``records``: the JSON list that ``bench/data.py --out`` wrote, one record per dataset
    and worker count."""
    workers = sorted({r["workers"] for r in records})
    rates: dict[str, dict[int, float]] = {}
    for r in records:  # datasets keep the order the bench ran them in
        rates.setdefault(r["dataset"], {})[r["workers"]] = r["records_per_s"]
    rows = []
    for name, by_workers in rates.items():
        label = f"{name} ({DATASET_NOTES[name]})" if name in DATASET_NOTES else name
        rows.append([label] + [thousands(by_workers[w]) if w in by_workers else "—"
                               for w in workers])
    return markdown_table(["dataset"] + [f"{w} workers" for w in workers], rows)


def render_data() -> str:
    return data_table(load("results_data_cpu.json"))


# --- FlowSep sampler ablations: bench/flowsep.py --ablate_workdir --------------------------

def ablation_row(result: dict, steps: int, solver: str = "euler", cfg_scale: float = 1.0,
                 noise_scale: float = 1.0) -> dict:
    """The row of an ablation JSON with these sampler settings (a row without
    ``noise_scale`` was sampled at the paper's 1.0)."""
    for row in result["rows"]:
        if (row["steps"], row["solver"], row["cfg_scale"], row.get("noise_scale", 1.0)) == (
                steps, solver, cfg_scale, noise_scale):
            return row
    raise KeyError(f"no ablation row with steps={steps} solver={solver} "
                   f"cfg_scale={cfg_scale} noise_scale={noise_scale}")


# specs/flowsep.py samples with SAMPLE_STEPS = 2 at NOISE_SCALE = 0.1; the steps table marks
# the chosen count in bold.
CHOSEN_STEPS = 2
STEP_COUNTS = (1, 2, 5, 10)


def flowsep_steps_table(runs: list[tuple[str, dict]]) -> str:
    """``runs``: (row label, ablation JSON on training mixtures) per seed; the cells are the
    VAE-ratio mixture-phase SDRi at noise scale 0.1."""
    rows = []
    for label, result in runs:
        cells = []
        for steps in STEP_COUNTS:
            cell = signed(ablation_row(result, steps, noise_scale=0.1)["vae_ratio_sdri"])
            cells.append(f"**{cell}**" if steps == CHOSEN_STEPS else cell)
        rows.append([label] + cells)
    return markdown_table(["Euler steps"] + [str(n) for n in STEP_COUNTS], rows)


def render_flowsep_steps() -> str:
    return flowsep_steps_table([
        (f"seed {seed} runlocal", load(f"results_flowsep_ablate_train128_seed{seed}.json"))
        for seed in (0, 1)] + [("seed 3 runlocal, **dev**",
                                load("results_flowsep_ablate_dev200_seed3.json"))])


# Rows the dev and the sampler tables show alike: label, then the settings whose numbers share
# a cell.
PAPER_ROW = ("10 Euler steps, noise scale 1 (paper)", [dict(steps=10)])
SOLVER_ROW = ("5 midpoint / 5 Heun steps (10 NFE)",
              [dict(steps=5, solver="midpoint"), dict(steps=5, solver="heun")])
CFG_ROW = ("10 steps, CFG scale 0 / 2 / 3", [dict(steps=10, cfg_scale=w) for w in (0.0, 2.0, 3.0)])

# Rows of the dev table: every setting the ablation tries, settings sharing a row split by ", ".
DEV_ROWS = (
    ("1 Euler step, noise scale 1", [dict(steps=1)]),
    ("2 Euler steps, noise scale 1", [dict(steps=2)]),
    ("5 Euler steps, noise scale 1", [dict(steps=5)]),
    PAPER_ROW,
    ("25 Euler steps, noise scale 1", [dict(steps=25)]),
    SOLVER_ROW,
    CFG_ROW,
    ("10 steps, noise scale 0.7 / 0.5 / 0.3",
     [dict(steps=10, noise_scale=t) for t in (0.7, 0.5, 0.3)]),
    ("10 steps, noise scale 0.1 / 0", [dict(steps=10, noise_scale=t) for t in (0.1, 0.0)]),
    ("1 / 5 Euler steps, noise scale 0.1", [dict(steps=n, noise_scale=0.1) for n in (1, 5)]),
    ("**2 Euler steps, noise scale 0.1 (chosen)**", [dict(steps=2, noise_scale=0.1)]),
)
DEV_RENDERERS = (("mixture phase, ratio to the mixture", "mixture_phase"),
                 ("ratio to the VAE-decoded mixture", "vae_ratio"), ("neural vocoder", "vocoder"))


def flowsep_dev_table(dev: dict) -> str:
    """Log-mel distance / SDRi of every ablation setting on the dev mixtures, per renderer."""
    rows = []
    for label, settings in DEV_ROWS:
        found = [ablation_row(dev, **s) for s in settings]
        rows.append([label] + [", ".join(f"{r[key + '_log_mel_distance']:.3f} / "
                                         f"{signed(r[key + '_sdri'])}" for r in found)
                               for _, key in DEV_RENDERERS])
    return markdown_table(["sampler"] + [name for name, _ in DEV_RENDERERS], rows)


def render_flowsep_dev() -> str:
    return flowsep_dev_table(load("results_flowsep_ablate_dev200_seed3.json"))


# Rows of the sampler table: label, then the settings whose numbers share a cell (" / ").
SAMPLER_ROWS = (
    ("1 Euler step, noise scale 1", [dict(steps=1)]),
    PAPER_ROW,
    ("25 Euler steps", [dict(steps=25)]),
    SOLVER_ROW,
    CFG_ROW,
    ("10 steps, noise scale 0.7", [dict(steps=10, noise_scale=0.7)]),
    ("10 steps, noise scale 0.5", [dict(steps=10, noise_scale=0.5)]),
    ("10 steps, noise scale 0.3", [dict(steps=10, noise_scale=0.3)]),
    ("**10 steps, noise scale 0.1 (the chosen temperature)**",
     [dict(steps=10, noise_scale=0.1)]),
    ("10 steps, noise scale 0 (deterministic)", [dict(steps=10, noise_scale=0.0)]),
)


def flowsep_sampler_table(train: dict, test: dict) -> str:
    """Mixture-phase log-mel distance and SDRi (ratio to the mixture) of the ablation JSONs on
    64 training and 128 test mixtures."""
    rows = []
    for label, settings in SAMPLER_ROWS:
        row = [label]
        for result in (train, test):
            found = [ablation_row(result, **s) for s in settings]
            row.append(" / ".join(f"{r['mixture_phase_log_mel_distance']:.3f}" for r in found))
            row.append(" / ".join(signed(r["mixture_phase_sdri"]) for r in found))
        rows.append(row)
    header = ["sampler", "train 64: log-mel dist.", "train 64: SDRi (dB)",
              "test 128: log-mel dist.", "test 128: SDRi (dB)"]
    return markdown_table(header, rows)


def render_flowsep_sampler() -> str:
    return flowsep_sampler_table(load("results_flowsep_ablate_train64.json"),
                                 load("results_flowsep_ablate_test128.json"))


RENDERERS = {
    "compile": render_compile,
    "clip-train-speed": render_clip_train_speed,
    "data": render_data,
    "flowsep-steps": render_flowsep_steps,
    "flowsep-sampler": render_flowsep_sampler,
    "flowsep-dev": render_flowsep_dev,
}


# --- Finding and rewriting the marked tables ------------------------------------------------

def doc_files() -> list[Path]:
    files = []
    for pattern in DOCS:
        files += sorted(ROOT.glob(pattern))
    return files


def regenerate(text: str, where: str) -> tuple[str, list[str]]:
    """``text`` with every marked table rendered afresh, and the names of those that changed.
    An unknown marker name is an error (``where`` names the file in its message)."""
    changed = []

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise KeyError(f"{where}: no renderer for table '{name}' "
                           f"(known: {', '.join(RENDERERS)})")
        if "<!-- table:" in match["body"]:  # an opening marker without its closing one
            raise ValueError(f"{where}: table '{name}' has no <!-- /table --> before the next")
        body = RENDERERS[name]()
        if body != match["body"]:
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return MARKER.sub(replace, text), changed


def marked_tables(files: list[Path]) -> list[tuple[Path, str]]:
    """(file, marker name) of every marked table in ``files``."""
    return [(path, m["name"]) for path in files for m in MARKER.finditer(path.read_text())]


def stale_tables(files: list[Path]) -> list[tuple[Path, str]]:
    """(file, marker name) of each marked table whose text differs from its JSON."""
    stale = []
    for path in files:
        _, changed = regenerate(path.read_text(), str(path))
        stale += [(path, name) for name in changed]
    return stale


def display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a marked table differs from its JSON")
    parser.add_argument("files", nargs="*", type=Path,
                        help=f"markdown files (default: {', '.join(DOCS)})")
    args = parser.parse_args(argv)
    files = args.files or doc_files()

    if args.check:
        stale = stale_tables(files)
        for path, name in stale:
            print(f"{display(path)}: table '{name}' differs from its JSON "
                  f"(run python bench/tables.py)")
        return 1 if stale else 0

    for path in files:
        text = path.read_text()
        new_text, changed = regenerate(text, str(path))
        if changed:
            path.write_text(new_text)
            print(f"{display(path)}: rewrote {', '.join(changed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
