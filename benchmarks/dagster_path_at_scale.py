"""The Dagster path at scale (issue #47): `scalellm run` as a user runs it, on a corpus of N distinct rows.

A labelled dataset (default: the shared tweet_eval_offensive, else the bundled banking77 demo) is drawn again to N
distinct rows as `scalellm bench --resample-to` draws them, with one task on its gold column (budget 1,000, the default
`simulated_hard` teacher, defaults otherwise). Measured: a first run, then a refresh with nothing changed — wall time,
each step's time from the run's own events (STEP_START to STEP_SUCCESS), the longest silence between two log lines of
the run (what a user watching the UI sees), and peak RSS of the run's process tree.

    .venv/bin/python -m benchmarks.dagster_path_at_scale --rows 1000000 3000000 [--code <git revision>]

`--code` runs the same steps with the code of another revision (checked out into a temporary worktree and put first
on PYTHONPATH), for a before/after table; `--engine` also times `scalellm bench` on the same rows. Results:
benchmarks/results/dagster_path_at_scale[-<label>].json; `--table BEFORE AFTER` prints the table of two of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
from dagster import DagsterEventType, DagsterInstance, RunsFilter

from scalellm_dagster.cli.bench import resample

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets" / "tweet_eval_offensive" / "data.parquet"
DEMO = REPO / "scalellm_dagster" / "demo" / "banking77.parquet"


def source_rows(rows: int, dataset: Path) -> tuple[pd.DataFrame, list[str]]:
    """`rows` distinct rows drawn again from `dataset` as `scalellm bench --resample-to` draws them (every row once,
    then rows drawn with replacement, each copy's text made distinct by its copy number), and the gold labels."""
    data = pd.read_parquet(dataset)
    gold = "label" if "label" in data.columns else "topic"
    frame = resample(pd.DataFrame({"text": data["text"].astype(str), "gold": data[gold].astype(str)}), rows, 0)
    return frame[["id", "text", "gold"]], sorted(frame["gold"].unique())


def engine_seconds(rows: int, dataset: Path, pythonpath: str | None) -> dict:
    """`scalellm bench` on the same rows: the engine in memory. Its own account of the flow (embedding, teacher,
    students, predictions: `seconds_total`) and its parts, beside the command's wall time (which also times a
    row-by-row baseline and inference probes)."""
    gold = "label" if "label" in pd.read_parquet(dataset).columns else "topic"
    env = {**os.environ, "TQDM_DISABLE": "1", **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "scalellm"),
                "bench",
                "--data",
                str(dataset),
                "--label-column",
                gold,
                "--resample-to",
                str(rows),
                "--budgets",
                "1000",
                "--seed",
                "0",
                "--out",
                f"{out}/bench.json",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        wall = round(time.perf_counter() - start, 1)
        report = json.loads(Path(out, "bench.json").read_text())
    [run] = report["runs"]
    return {
        "flow_seconds": run["seconds_total"],
        "embed_seconds": report["embed_seconds"],
        "teacher_seconds": run["seconds_teacher"],
        "train_seconds": run["seconds_train"],
        "predict_seconds": run["seconds_predict"],
        "peak_rss_gb": round(report["peak_rss_mb"] / 1024, 2),
        "command_wall_seconds": wall,
    }


def tasks_yaml(labels: list[str]) -> str:
    return (
        "tasks:\n  - name: label\n    instruction: Label the text.\n    gold_column: gold\n    budget: 1000\n"
        f"    labels: [{', '.join(labels)}]\n"
    )


def run_and_watch(env: dict) -> dict:
    """`scalellm run`, its wall time and the peak RSS of its process tree (sampled every 0.2 s)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "scalellm"), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    root, samples = psutil.Process(proc.pid), []
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            samples.append((time.time(), sum(p.memory_info().rss for p in tree if p.is_running())))
        except psutil.Error:
            pass
        time.sleep(0.2)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"scalellm run failed:\n{out[-4000:]}")
    peak = max((rss for _, rss in samples), default=0)
    return {"wall_seconds": round(time.perf_counter() - start, 1), "peak_rss_gb": round(peak / 2**30, 2)}, samples


def step_times(home: Path, samples: list) -> dict:
    """The latest run's step times, each step's peak RSS, and its longest silence between log lines, from the
    run's own events and the RSS samples."""
    with DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(RunsFilter(), limit=1)
        logs = instance.all_logs(run.run_id)
    started, took, peak = {}, {}, {}
    for entry in logs:
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            begin = started[entry.step_key]
            took[entry.step_key] = round(entry.timestamp - begin, 1)
            during = [rss for t, rss in samples if begin <= t <= entry.timestamp]
            if during and entry.timestamp - begin >= 1.0:
                peak[entry.step_key] = round(max(during) / 2**30, 2)
    stamps = sorted((e.timestamp, e.step_key or "", e.user_message[:100]) for e in logs)
    gaps = [(b[0] - a[0], a) for a, b in zip(stamps, stamps[1:])]
    gap, before = max(gaps) if gaps else (0.0, (0, "", ""))
    return {
        "steps": dict(sorted(took.items(), key=lambda kv: -kv[1])),
        "step_peak_rss_gb": dict(sorted(peak.items(), key=lambda kv: -kv[1])),
        "longest_silence_seconds": round(gap, 1),
        "longest_silence_after": f"{before[1]}: {before[2]}",
    }


def measure(rows: int, dataset: Path, pythonpath: str | None, work: Path, engine: bool) -> dict:
    folder = work / f"rows-{rows}"
    folder.mkdir()
    frame, labels = source_rows(rows, dataset)
    frame.to_parquet(folder / "corpus.parquet", index=False)
    del frame
    (folder / "tasks.yaml").write_text(tasks_yaml(labels))
    home = folder / "dagster_home"
    env = {
        **os.environ,
        "SCALELLM_CORPUS": str(folder / "corpus.parquet"),
        "SCALELLM_TASKS": str(folder / "tasks.yaml"),
        "SCALELLM_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
        "DAGSTER_HOME": str(home),
        "TQDM_DISABLE": "1",
    }
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    result = {"rows": rows, "dataset": dataset.parent.name}
    if engine:
        result["engine"] = engine_seconds(rows, dataset, pythonpath)
        print(f"{rows:,} rows, engine: {json.dumps(result['engine'])}", flush=True)
    for name in ("first_run", "no_change_refresh"):
        watched, samples = run_and_watch(env)
        result[name] = {**watched, **step_times(home, samples)}
        print(f"{rows:,} rows, {name}: {json.dumps(result[name])}", flush=True)
    shutil.rmtree(folder)
    return result


STEPS = {  # the steps the table shows, by the run's step keys
    "corpus": "corpus",
    "corpus_corpus_rows_valid": "corpus check",
    "embeddings": "embeddings",
    "embeddings_embeddings_match_corpus": "embeddings check",
    "label__labeled_sample": "labeled_sample",
    "label__student_candidates": "student_candidates",
    "label__predictions": "predictions",
    "label__predictions_predictions_cover_corpus": "predictions check",
}


CHECKS = (  # every check's step, by the names its step keys end with (Dagster's schema check: asset_check_<hash>)
    "corpus_rows_valid",
    "gold_labels_in_label_set",
    "embeddings_match_corpus",
    "sample_labels_valid",
    "sample_invalid_answers_rare",
    "every_candidate_evaluated",
    "student_chosen",
    "chosen_student_above_floor",
    "predictions_cover_corpus",
    "audit_agreement_within_estimate",
)


def checks_seconds(steps: dict) -> float:
    """The time of every check step of a run together."""
    return sum(s for k, s in steps.items() if k.endswith(CHECKS) or k.startswith("asset_check_"))


def table(before: dict, after: dict) -> str:
    """The before/after table of BENCHMARKS.md, from two results files."""
    lines = [
        "| rows | run | code | wall s | peak RSS GB | longest silence s | "
        + " | ".join(STEPS.values())
        + " | every check |",
        "|---:|---|---|---:|---:|---:|" + "---:|" * (len(STEPS) + 1),
    ]
    for old, new in zip(before["runs"], after["runs"]):
        for name in ("first_run", "no_change_refresh"):
            for code, run in (("before", old), ("after", new)):
                r = run[name]
                steps = " | ".join(f"{r['steps'].get(k, 0):.1f}" for k in STEPS)
                steps += f" | {checks_seconds(r['steps']):.1f}"
                lines.append(
                    f"| {run['rows']:,} | {name.replace('_', ' ')} | {code} | {r['wall_seconds']:.1f} | "
                    f"{r['peak_rss_gb']:.2f} | {r['longest_silence_seconds']:.1f} | {steps} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--code", default="", help="a git revision to measure instead of the working tree")
    parser.add_argument("--label", default="", help="a suffix for the results file (e.g. before)")
    parser.add_argument("--dataset", type=Path, default=SHARED if SHARED.is_file() else DEMO)
    parser.add_argument("--engine", action="store_true", help="also time `scalellm bench` on the same rows")
    parser.add_argument("--table", nargs=2, metavar=("BEFORE", "AFTER"), help="print the table of two results files")
    args = parser.parse_args()
    if args.table:
        print(table(*(json.loads(Path(f).read_text()) for f in args.table)))
        return
    work = Path(tempfile.mkdtemp(prefix="scalellm-scale-"))
    tree = None
    try:
        if args.code:
            tree = work / "code"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.code], cwd=REPO, check=True)
        report = {"code": args.code or "working tree", "runs": []}
        for rows in args.rows:
            report["runs"].append(measure(rows, args.dataset, str(tree) if tree else None, work, args.engine))
    finally:
        if tree:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=True)
        shutil.rmtree(work, ignore_errors=True)
    out = REPO / "benchmarks" / "results" / f"dagster_path_at_scale{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
