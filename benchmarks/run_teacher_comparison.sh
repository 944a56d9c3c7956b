#!/usr/bin/env bash
# BENCHMARKS.md, "A teacher whose mistakes look like an LLM's (issue #36)": the two simulated teachers side by side
# at the same accuracy (0.9), seed and budgets, on the bundled demo and the shared test sets; then `simulated_hard` at
# the accuracy SmolLM2-135M measured on ag_news (0.315), beside the real model's run (ag_news_smollm2.json).
# Usage: bash benchmarks/run_teacher_comparison.sh [path/to/shared/datasets]   (~10 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets}
OUT=benchmarks/results
COMMON="--teacher simulated,simulated_hard --teacher-accuracy 0.9 --teacher-latency-ms 0 --budgets 250,500,1000"
COMMON="$COMMON --baseline-sample 100 --probe-rows 20000 --seed 0"
.venv/bin/scalellm bench --data scalellm_dagster/demo/banking77.parquet --label-column intent \
  --split-column split --eval-split test $COMMON --out "$OUT/teachers_banking77_demo.json"
.venv/bin/scalellm bench --data "$DATA/tweet_eval_offensive/data.parquet" --split-column split --eval-split test \
  $COMMON --out "$OUT/teachers_tweet_eval_offensive.json"
.venv/bin/scalellm bench --data "$DATA/ag_news/data.parquet" $COMMON --out "$OUT/teachers_ag_news.json"
.venv/bin/scalellm bench --data "$DATA/ag_news/data.parquet" --teacher simulated_hard --teacher-accuracy 0.315 \
  --teacher-latency-ms 0 --budgets 250,500,1000,2000 --baseline-sample 100 --probe-rows 20000 --seed 0 \
  --out "$OUT/ag_news_simulated_hard_at_smollm2_accuracy.json"
