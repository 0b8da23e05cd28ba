#!/usr/bin/env bash
# Full-size train steps compiled for TPU slices from this CPU (--mode=compile, libtpu from
# setup.sh): the README's pod table. Each report lands in bench/results_compile/<name>.json.
#   bash bench/compile.sh            (minutes per row on a 2-core CPU)
set -uo pipefail
cd "$(dirname "$0")/.."
out=bench/results_compile
mkdir -p "$out"
row() {  # name target spec [overrides...]
  local name=$1 target=$2 spec=$3; shift 3
  local wd; wd=$(mktemp -d)
  JAX_PLATFORMS=cpu .venv/bin/python -m xmodal.main --spec="$spec" --workdir="$wd" \
    --mode=compile --target="$target" "$@" 2>&1 | grep -E "^(main|spec error|report)" 
  cp "$wd"/compile_*.json "$out/$name.json" 2>/dev/null
  rm -rf "$wd"
}
row clip_v5e-16 v5e:4x4 specs/clip.py
row siglip_v5e-16 v5e:4x4 specs/siglip.py
row clip_ring_32k_v5e-256 v5e:16x16 specs/clip.py:batch=32768
row clip_gathered_32k_v5e-256 v5e:16x16 specs/clip.py:batch=32768 --spec.objective.ring=False
