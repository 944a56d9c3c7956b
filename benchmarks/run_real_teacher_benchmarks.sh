#!/usr/bin/env bash
# BENCHMARKS.md, "A real teacher": `scalellm bench` with SmolLM2-135M-Instruct (llm extra) as the teacher, in-process,
# one llama.cpp thread, 10 rows a request; the baseline asks unseen rows one by one. Then the simulated teacher at the
# accuracy SmolLM2 measured, unbiased and biased like SmolLM2, to see how much kinder the simulation is.
# Usage: bash benchmarks/run_real_teacher_benchmarks.sh [path/to/shared/datasets]   (~40 min for ag_news, ~15 for
# tweet_eval on 2 cores; tweet_eval stops at 1,000 labels and a 100-row baseline to keep to that)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets}
OUT=benchmarks/results
mkdir -p "$OUT"
COMMON="--teacher-concurrency 1 --teacher-batch-size 10 --seed 0"
run() {  # name, split args, budgets, baseline rows, simulated bias
  local NAME=$1 SPLIT=$2 BUDGETS=$3 BASE=$4 BIAS=$5
  .venv/bin/scalellm bench --data "$DATA/$NAME/data.parquet" $SPLIT --teacher local --budgets "$BUDGETS" \
    --baseline-sample "$BASE" $COMMON --out "$OUT/${NAME}_smollm2.json"
  ACC=$(.venv/bin/python -c "import json; print(json.load(open('$OUT/${NAME}_smollm2.json'))['teacher']['accuracy_vs_gold'])")
  .venv/bin/scalellm bench --data "$DATA/$NAME/data.parquet" $SPLIT --teacher simulated --teacher-accuracy "$ACC" \
    --teacher-latency-ms 0 --budgets "$BUDGETS" --baseline-sample "$BASE" $COMMON \
    --out "$OUT/${NAME}_simulated_at_smollm2_accuracy.json"
  [ -n "$BIAS" ] || return 0
  .venv/bin/scalellm bench --data "$DATA/$NAME/data.parquet" $SPLIT --teacher simulated --teacher-accuracy "$ACC" \
    --teacher-bias "$BIAS" --teacher-latency-ms 0 --budgets "$BUDGETS" --baseline-sample "$BASE" $COMMON \
    --out "$OUT/${NAME}_simulated_biased_at_smollm2_accuracy.json"
}
# bias: about the share of SmolLM2's wrong answers that go to its favourite label (read off the first run's
# answer_share_by_label; the simulation's favoured label is the first in sorted order, Business, SmolLM2's favourite
# too). With two classes every wrong answer already is "the other label", so bias changes nothing: none for tweet_eval.
run ag_news "" 250,500,1000,2000 200 0.6
run tweet_eval_offensive "--split-column split --eval-split test" 250,500,1000 100 ""
