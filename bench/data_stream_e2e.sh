#!/bin/bash
# Issue 17, end to end at 224x224: a search and a retraining, each from WebDataset shards and from an
# image folder (small subsets).  For each: run A uninterrupted; run B killed (SIGKILL) a few seconds
# into epoch 2, then --resume'd; the metrics (all but the times) must be identical.
#   bash bench/data_stream_e2e.sh SHARDS_DIR IMAGE_FOLDER WORK_DIR
# IMAGE_FOLDER should hold 50,000+ images so that it streams by size (else prefix it with stream:).
# CKPT_EVERY=S: both runs also checkpoint after every S steps inside an epoch (--checkpoint-every), so B
# resumes at the step after its last checkpoint, not at the start of epoch 2 (TRAIN_SUBSET: images, default 32).
set -u
SHARDS=$1; FOLDER=$2; WORK=$3; ONLY=${4:-.}
PY=${PYTHON:-python}
export ATTNAS_WORKERS=${ATTNAS_WORKERS:-1} OMP_NUM_THREADS=1
SO='{"C": 4, "N": 1}'
COMMON=(--space-options "$SO" --image-size 224 --train-subset "${TRAIN_SUBSET:-32}" --test-subset 16 --epochs 2 --batch-size 8)
[ -n "${CKPT_EVERY:-}" ] && COMMON+=(--checkpoint-every "$CKPT_EVERY")
mkdir -p "$WORK" && cd "$WORK"
run_pair() {  # name command args...
  local name=$1 cmd=$2; shift 2
  [[ $name =~ $ONLY ]] || return 0
  rm -rf "$name-A" "$name-B"
  $PY -m attnas.cli.main "$cmd" "$@" "${COMMON[@]}" --out "$name-A" --quiet > "$name-A.log" 2>&1 || { echo "$name: A failed"; return; }
  $PY -m attnas.cli.main "$cmd" "$@" "${COMMON[@]}" --out "$name-B" --quiet > "$name-B.log" 2>&1 &
  local pid=$!
  until [ -s "$name-B/metrics.jsonl" ]; do sleep 1; done
  # kill half-way through epoch 2 (half of epoch 1's time after its metrics line)
  sleep "$($PY -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['epoch_time_s'] / 2)" "$name-B/metrics.jsonl")"
  kill -9 $pid; wait $pid; local rc=$?
  local lines=$(wc -l < "$name-B/metrics.jsonl")
  [ $rc = 137 ] && [ "$lines" = 1 ] && echo "$name: B killed in epoch 2 (SIGKILL, 1 epoch checkpointed)" \
    || echo "$name: B NOT killed mid-epoch (rc $rc, $lines epochs done): no resume test"
  $PY - "$name-B/checkpoint.pt" <<'PYEOF'
import sys
from attnas.training.checkpoint import load_checkpoint
s = load_checkpoint(sys.argv[1])
p = s.get("partial")
print(f"{sys.argv[1]}: " + (f"inside epoch {s['epoch'] + 2}, resumes at step {p['step'] + 1}" if p
                            else f"after epoch {s['epoch'] + 1}"))
PYEOF
  $PY -m attnas.cli.main "$cmd" --resume "$name-B" --quiet > "$name-B2.log" 2>&1; echo "$name: resume rc $?"
  $PY - "$name" <<'PYEOF'
import json, sys
n = sys.argv[1]
strip = lambda p: [{k: v for k, v in json.loads(l).items() if "time" not in k} for l in open(p)]
a, b = strip(f"{n}-A/metrics.jsonl"), strip(f"{n}-B/metrics.jsonl")
print(f"{n}: epochs {len(a)} / {len(b)}, identical metrics: {a == b}; A:",
      [(r["epoch"], round(r["train_loss"], 6)) for r in a])
PYEOF
}
run_pair search-shards search --space nb201 --dataset "shards:$SHARDS"
run_pair search-folder search --space nb201 --dataset "imagefolder:$FOLDER"
ARCH=$(ls search-*-A/architecture.json 2>/dev/null | head -1)
run_pair train-shards train --arch "$ARCH" --dataset "shards:$SHARDS"
run_pair train-folder train --arch "$ARCH" --dataset "imagefolder:$FOLDER"
