#!/usr/bin/env bash
# The BENCHMARKS.md tables: `scalellm bench` on the shared datasets (development data, not shipped).
# Usage: bash benchmarks/run_paper_benchmarks.sh [path/to/shared/datasets]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets}
OUT=benchmarks/results
mkdir -p "$OUT"
BENCH=".venv/bin/scalellm bench --teacher-latency-ms 30 --teacher-concurrency 8 --seed 0 --plot"
$BENCH --data "$DATA/tweet_eval_offensive/data.parquet" --split-column split --eval-split test \
  --teacher-accuracy 0.72 --budgets 141,282,1000,2000 --out "$OUT/tweet_eval_offensive.json"
$BENCH --data "$DATA/banking77/data.parquet" --split-column split --eval-split test \
  --teacher-accuracy 0.90 --budgets 131,262,1000,2000 --out "$OUT/banking77.json"
$BENCH --data "$DATA/ag_news/data.parquet" \
  --teacher-accuracy 0.90 --budgets 88,176,1000,2000 --out "$OUT/ag_news.json"
# the same tweet_eval job at a realistic LLM latency (~0.5 s a call), for the speedup at scale
.venv/bin/scalellm bench --data "$DATA/tweet_eval_offensive/data.parquet" --split-column split --eval-split test \
  --teacher-accuracy 0.72 --teacher-latency-ms 500 --teacher-concurrency 8 --budgets 282 --baseline-sample 200 \
  --seed 0 --out "$OUT/tweet_eval_offensive_500ms.json"
