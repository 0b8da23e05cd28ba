#!/usr/bin/env bash
# Runs one xmodal spec on every host of a Cloud TPU VM slice, as one multi-process JAX job.
#
#   tpu/launch.sh NAME ZONE SPEC WORKDIR [more xmodal.main flags]
#   e.g. tpu/launch.sh my-v4-32 us-central2-b specs/clip.py gs://bucket/runs/clip
#
# Each host gets the clone of this repository at the same commit (copied with scp), a venv made
# by setup.sh, and the coordinator environment that xmodal.core.parallel.init_distributed reads:
# XMODAL_COORDINATOR (worker 0's internal address), XMODAL_NUM_PROCESSES, XMODAL_PROCESS_ID.
# Logs come back to tpu/logs/<name>/worker-<i>.log. Needs gcloud, logged in, and the slice made
# (gcloud compute tpus tpu-vm create NAME --zone ZONE --accelerator-type ... --version ...).
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 NAME ZONE SPEC WORKDIR [xmodal.main flags]" >&2; exit 2; }
name=$1; zone=$2; spec=$3; workdir=$4; shift 4
cd "$(dirname "$0")/.."
[ -f "${spec%%:*}" ] || { echo "no spec file ${spec%%:*}" >&2; exit 2; }
ips=($(gcloud compute tpus tpu-vm describe "$name" --zone "$zone" \
        --format='value(networkEndpoints[].ipAddress)' | tr ';,' '  '))
n=${#ips[@]}
[ "$n" -ge 1 ] || { echo "TPU $name in $zone has no hosts" >&2; exit 1; }
coordinator="${ips[0]}:${XMODAL_PORT:-8476}"
# The same tree on every host: the committed HEAD, as an archive.
archive=$(mktemp --suffix=.tar.gz)
git archive --format=tar.gz -o "$archive" HEAD
gcloud compute tpus tpu-vm scp "$archive" "$name:xmodal.tar.gz" --zone "$zone" --worker=all
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command \
  "rm -rf xmodal && mkdir xmodal && tar xzf xmodal.tar.gz -C xmodal && cd xmodal && bash setup.sh >/dev/null && .venv/bin/pip install -q 'jax[tpu]'"
mkdir -p "tpu/logs/$name"
for ((i = 0; i < n; i++)); do
  gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker="$i" --command \
    "cd xmodal && XMODAL_COORDINATOR=$coordinator XMODAL_NUM_PROCESSES=$n XMODAL_PROCESS_ID=$i \
     .venv/bin/python -m xmodal.main --spec=$spec --workdir=$workdir $*" \
    > "tpu/logs/$name/worker-$i.log" 2>&1 &
done
wait
echo "done: logs in tpu/logs/$name/"
