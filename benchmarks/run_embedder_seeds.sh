#!/usr/bin/env bash
# Static vs LSA over several seeds (sample, simulated teacher's errors, students): whether a gap at one seed is the
# embedder or the draw. Writes benchmarks/results/seeds/<dataset>_<embedder>_seed<N>.json.
# Usage: bash benchmarks/run_embedder_seeds.sh [path/to/shared/datasets] [seeds...]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets}
shift || true
SEEDS=${*:-1 2 3}
for SEED in $SEEDS; do
  for EMBEDDER in static lsa; do
    .venv/bin/scalellm bench --embedder $EMBEDDER --data "$DATA/tweet_eval_offensive/data.parquet" --split-column split \
      --eval-split test --teacher-accuracy 0.72 --teacher-latency-ms 30 --teacher-concurrency 8 \
      --budgets 141,282,1000,2000 --probe-rows 20000 --seed "$SEED" \
      --out "benchmarks/results/seeds/tweet_eval_offensive_${EMBEDDER}_seed${SEED}.json"
    .venv/bin/scalellm bench --embedder $EMBEDDER --data "$DATA/banking77/data.parquet" --split-column split \
      --eval-split test --teacher-accuracy 0.90 --teacher-latency-ms 30 --teacher-concurrency 8 \
      --budgets 1000,2000 --probe-rows 20000 --seed "$SEED" \
      --out "benchmarks/results/seeds/banking77_${EMBEDDER}_seed${SEED}.json"
  done
done
