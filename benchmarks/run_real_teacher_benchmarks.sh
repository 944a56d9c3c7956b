#!/usr/bin/env bash
# BENCHMARKS.md, "A real teacher": `scalellm bench` with SmolLM2-135M-Instruct (llm extra) as the teacher, in-process,
# one llama.cpp thread, 10 rows a request; the baseline asks 200 unseen rows one by one. Then the simulated teacher
# at the accuracy SmolLM2 measured, to see how much kinder the simulation is.
# Usage: bash benchmarks/run_real_teacher_benchmarks.sh [path/to/shared/datasets]   (~25 min a dataset on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets}
OUT=benchmarks/results
mkdir -p "$OUT"
COMMON="--budgets 250,500,1000,2000 --baseline-sample 200 --teacher-concurrency 1 --teacher-batch-size 10 --seed 0"
for NAME in ag_news tweet_eval_offensive; do
  SPLIT=$([ "$NAME" = ag_news ] && echo "" || echo "--split-column split --eval-split test")
  .venv/bin/scalellm bench --data "$DATA/$NAME/data.parquet" $SPLIT --teacher local $COMMON \
    --out "$OUT/${NAME}_smollm2.json"
  ACC=$(.venv/bin/python -c "import json; print(json.load(open('$OUT/${NAME}_smollm2.json'))['teacher']['accuracy_vs_gold'])")
  .venv/bin/scalellm bench --data "$DATA/$NAME/data.parquet" $SPLIT --teacher simulated --teacher-accuracy "$ACC" \
    --teacher-latency-ms 0 $COMMON --out "$OUT/${NAME}_simulated_at_smollm2_accuracy.json"
done
