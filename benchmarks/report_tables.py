"""Markdown tables for BENCHMARKS.md from the JSON reports of `scalellm bench`.

.venv/bin/python -m benchmarks.report_tables benchmarks/results/*.json
.venv/bin/python -m benchmarks.report_tables \
    --embedders benchmarks/results/{tweet_eval_offensive,banking77,ag_news}.json
    (each LSA report beside its `_static` and `_minilm` twins, where they exist: accuracy by budget,
    embedding time)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    for path in paths:
        r = json.loads(Path(path).read_text())
        t, b = r["teacher"], r["baseline"]
        grown = (
            f" (its {r['resampled_from_rows']:,} rows drawn again with replacement, copies made distinct)"
            if r.get("resampled_from_rows")
            else ""
        )
        print(
            f"### {Path(path).stem}: {r['rows']:,} rows{grown}, {r['classes']} classes, eval rows: {r['eval_rows']}\n"
        )
        print(
            f"Embedder {r['embedder']} ({r['embed_seconds']:.1f} s). Teacher `simulated`: accuracy vs gold "
            f"{t['accuracy_vs_gold']:.3f}, {t['latency_ms']:.0f} ms per request, concurrency {t['concurrency']}. "
            f"Baseline (the teacher on every row, one row per request): {b['teacher_calls']:,} calls, "
            f"{b['seconds']:,.1f} s ({b['seconds_measured_or_extrapolated']}), accuracy vs gold "
            f"{b['accuracy_vs_gold']:.3f}.\n"
        )
        print(
            "| budget | teacher calls (% rows) | chosen | acc. vs gold | vs teacher's | agreement w/ teacher "
            "| s total | s teacher | s train+select | s predict | speedup | speedup excl. embedding |"
        )
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for run in r["runs"]:
            gap = run["accuracy_vs_gold"] - b["accuracy_vs_gold"]
            print(
                f"| {run['budget']:,} | {run['teacher_calls']:,} ({run['teacher_calls_fraction']:.1%}) | "
                f"{run['chosen_model']} | {run['accuracy_vs_gold']:.3f} | {gap:+.3f} | "
                f"{run['agreement_with_teacher']:.3f} | {run['seconds_total']:.1f} | {run['seconds_teacher']:.1f} | "
                f"{run['seconds_train']:.1f} | {run['seconds_predict']:.2f} | {run['speedup_vs_baseline']:.1f}× | "
                f"{run['speedup_excluding_embedding']:.1f}× |"
            )
        inf = ", ".join(
            f"{k} {v['rows_per_second']:,}/s ({v['rows']:,} rows)" for k, v in r["inference_by_model"].items()
        )
        print(
            f"\nInference: {inf}. DuckDB → numpy, {r['embeddings_read_rows']:,} × {r.get('dim', 384)} float32: "
            f"{r['embeddings_read_seconds']:.2f} s (memory copy {r['memory_copy_seconds']:.2f} s). "
            f"Peak RSS {r['peak_rss_mb']:,.0f} MB ({r['peak_rss_mb_with_1m_row_probes']:,.0f} MB with the 1M-row "
            "probes).\n"
        )


def embedders(paths: list[str]) -> None:
    print(
        "| dataset | embedder | embed s | texts/s | "
        + " | ".join(f"acc. vs gold @ budget {i}" for i in range(1, 5))
        + " | teacher on every row |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for path in paths:
        first = Path(path)
        for report_path in (first, *(first.with_name(f"{first.stem}_{e}.json") for e in ("static", "minilm"))):
            if not report_path.is_file():
                continue
            r = json.loads(report_path.read_text())
            runs = " | ".join(
                f"{run['accuracy_vs_gold']:.3f} @ {run['budget']:,} ({run['teacher_calls_fraction']:.0%})"
                for run in r["runs"]
            )
            print(
                f"| {first.stem} | {r['embedder']} | {r['embed_seconds']:.1f} | {r['rows'] / r['embed_seconds']:,.0f} "
                f"| {runs} | {r['baseline']['accuracy_vs_gold']:.3f} |"
            )


def pruning(paths: list[str]) -> None:
    """Each report beside its `_noprune` twin (`x_static.json` and `x_static_noprune.json`): the chosen student and
    the train+select seconds per budget."""
    print(
        "| dataset | budget | chosen (pruned) | chosen (every candidate) | acc. vs gold | s train+select pruned "
        "| s every candidate |"
    )
    print("|---|---:|---|---|---:|---:|---:|")
    for path in paths:
        a = json.loads(Path(path).read_text())
        b = json.loads(Path(path).with_name(f"{Path(path).stem}_noprune.json").read_text())
        for x, y in zip(a["runs"], b["runs"]):
            same = "" if x["chosen_model"] == y["chosen_model"] else " (differs)"
            print(
                f"| {Path(path).stem} | {x['budget']:,} | {x['chosen_model']} | {y['chosen_model']}{same} | "
                f"{x['accuracy_vs_gold']:.3f} / {y['accuracy_vs_gold']:.3f} | {x['seconds_train']:.1f} | "
                f"{y['seconds_train']:.1f} |"
            )


def seeds(results: str = "benchmarks/results") -> None:
    """Static against LSA per dataset and budget over seeds: seed 0 from the main reports, others from seeds/."""
    root = Path(results)
    print(
        "| dataset | budget | static: acc. vs gold per seed | mean | LSA: acc. vs gold per seed | mean | "
        "static − LSA (mean) |"
    )
    print("|---|---:|---|---:|---|---:|---:|")
    for name in ("tweet_eval_offensive", "banking77", "ag_news"):
        runs = {}
        for emb, seed0 in (("static", root / f"{name}_static.json"), ("lsa", root / f"{name}.json")):
            paths = [seed0, *sorted((root / "seeds").glob(f"{name}_{emb}_seed*.json"))]
            for path in paths:
                if path.is_file():
                    for run in json.loads(path.read_text())["runs"]:
                        runs.setdefault((run["budget"], emb), []).append(run["accuracy_vs_gold"])
        for budget in sorted({b for b, _ in runs}):
            s, lsa = runs.get((budget, "static"), []), runs.get((budget, "lsa"), [])
            if len(s) < 2 or len(lsa) < 2:
                continue
            ms, ml = sum(s) / len(s), sum(lsa) / len(lsa)
            print(
                f"| {name} | {budget:,} | {', '.join(f'{a:.3f}' for a in s)} | {ms:.3f} | "
                f"{', '.join(f'{a:.3f}' for a in lsa)} | {ml:.3f} | {ms - ml:+.3f} |"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--embedders"]:
        embedders(sys.argv[2:])
    elif sys.argv[1:2] == ["--pruning"]:
        pruning(sys.argv[2:])
    elif sys.argv[1:2] == ["--seeds"]:
        seeds(*sys.argv[2:])
    else:
        main(sys.argv[1:])
