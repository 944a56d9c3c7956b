"""`scalellm bench`: the ScaleLLM flow end to end on a labelled file, timed against asking the teacher about
every row. Framework-free: the same flow steps the Dagster assets call (`scalellm_dagster.flow`), with an
in-memory answer cache instead of the warehouse and timing around each step.

The teacher is a simulated one (a stand-in for an LLM with a given accuracy and latency, answering from the label
column: `simulated_hard` errs on the rows a model finds hard, `simulated` at random; both side by side with
`--teacher simulated,simulated_hard`) or a real LLM (`--teacher openai|local`). Accuracy is measured on evaluation
rows the teacher never saw; a real teacher's own accuracy and the students' agreement with it on the baseline's rows,
where it was asked.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from scalellm_dagster.core.sampling import random_sample
from scalellm_dagster.core.students import DEFAULT_CANDIDATES, fit_student, predict_with_confidence
from scalellm_dagster.embedders.embedder_kinds import EMBEDDERS
from scalellm_dagster.embedders.protocol import Embedder
from scalellm_dagster.flow import (
    MemoryCache,
    TeacherSession,
)
from scalellm_dagster.flow.in_memory import FlowRun, run_flow
from scalellm_dagster.names import EMBEDDINGS
from scalellm_dagster.resources.from_settings import embedder_resource, teacher_resource
from scalellm_dagster.resources.teacher import TeacherResource
from scalellm_dagster.settings import Settings
from scalellm_dagster.tasks_config import SUSPECT_POLICIES, TaskSpec, parse_task
from scalellm_dagster.teachers.base import Teacher
from scalellm_dagster.teachers.teacher_kinds import TEACHERS, teacher_kind


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="labelled .parquet or .csv")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--id-column", default="id", help="unique row ids (row numbers when the column is absent)")
    p.add_argument("--split-column", help="column naming each row's split")
    p.add_argument("--eval-split", help="rows of this split are only evaluated, never sent to the teacher")
    p.add_argument("--max-rows", type=int, help="random subsample of the file (seeded)")
    p.add_argument(
        "--resample-to",
        type=int,
        help="grow the file to this many rows by drawing rows again (seeded), for timings at scale; each "
        "copy's text gets a ' [k]' suffix so that no cache answers it from its original",
    )
    p.add_argument(
        "--teacher",
        default="simulated_hard",
        type=_teacher_kinds,
        help="simulated: answers from the label column at --teacher-accuracy, wrong on rows drawn by a hash (not "
        "an LLM); simulated_hard: the same, wrong on the rows a model finds hard (not an LLM); openai: any "
        "OpenAI-compatible endpoint (--base-url, --model, OPENAI_API_KEY); local: a GGUF model "
        "in a worker process (llm extra; --local-model, default SmolLM2-135M-Instruct). Several, comma-separated "
        "(simulated,simulated_hard): each runs the same budgets and seed, side by side, one report each",
    )
    p.add_argument("--base-url", help="with --teacher openai (default: OPENAI_BASE_URL, else OpenAI)")
    p.add_argument(
        "--teacher-mode",
        default="sync",
        choices=["sync", "batch"],
        help="with --teacher openai: batch runs the same budgets and seed twice, synchronously and through the "
        "endpoint's Batch API (SCALELLM_BATCH_* settings), and reports their cost, requests and wall time side by "
        "side (<out>_sync.json, <out>_batch.json, <out>)",
    )
    p.add_argument("--model", default="gpt-4o-mini", help="with --teacher openai")
    p.add_argument("--local-model", help="with --teacher local: a GGUF file")
    p.add_argument("--local-threads", type=int, default=1, help="with --teacher local: llama.cpp threads")
    p.add_argument("--teacher-accuracy", type=float, default=0.9)
    p.add_argument(
        "--teacher-bias", type=float, default=0.0, help="simulated: share of wrong answers given to one label"
    )
    p.add_argument("--teacher-latency-ms", type=float, default=30.0, help="per request")
    p.add_argument("--teacher-concurrency", type=int, default=8)
    p.add_argument(
        "--teacher-batch-size", type=int, default=1, help="rows per request (1: one call a row, as the baseline)"
    )
    p.add_argument(
        "--baseline-sample",
        type=int,
        default=400,
        help="row-by-row calls actually made to time the baseline; 0 = ask about every row",
    )
    p.add_argument("--budgets", default="250,500,1000,2000", help="teacher labels per run, comma-separated")
    p.add_argument("--sampling", default="random", choices=["random", "stratified-by-cluster", "uncertainty"])
    p.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES))
    p.add_argument(
        "--no-prune",
        action="store_true",
        help="evaluate every candidate at every sample size (default: drop those clearly behind early)",
    )
    p.add_argument("--cascade-budget", type=int, default=0)
    p.add_argument("--cascade-target", type=float, default=0.95)
    p.add_argument(
        "--cascade-delta",
        type=float,
        default=None,
        help="certify --cascade-target with probability >= 1 - delta (finite-sample bound)",
    )
    p.add_argument(
        "--suspect-labels",
        default="keep",
        choices=SUSPECT_POLICIES,
        help="teacher labels the students find implausible: keep, reask (one row per request; needs "
        "--teacher-batch-size > 1 to be a different question) or drop from training",
    )
    p.add_argument(
        "--embedder",
        default="static",
        choices=[k for k, kind in EMBEDDERS.items() if not kind.remote],
        help="static: MiniLM distilled to static token vectors, shipped (default); lsa: TF-IDF + SVD "
        "fitted on the data; minilm: all-MiniLM-L6-v2, needs the optional minilm extra",
    )
    p.add_argument("--dim", type=int, default=384, help="LSA's dimensions (the others have their model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--probe-rows", type=int, default=1_000_000, help="rows tiled for the inference and DuckDB read probes"
    )
    p.add_argument("--out", default="report.json")
    p.add_argument("--plot", action="store_true", help="also write <out>_budget.png and <out>_latency.png")


def _teacher_kinds(value: str) -> str:
    for kind in value.split(","):
        if kind not in TEACHERS:
            raise argparse.ArgumentTypeError(f"unknown teacher {kind!r} (choose from {', '.join(TEACHERS)})")
    return value


def run_side_by_side(args: argparse.Namespace) -> dict:
    """Each teacher of `--teacher a,b` through the same flow, budgets and seed."""
    return _side_by_side(
        args,
        "teacher",
        args.teacher.split(","),
        lambda kind: {"teacher": kind},
        lambda report, one: {
            "teacher_accuracy_vs_gold": report["teacher"]["accuracy_vs_gold"],
            "budget": one["budget"],
            "chosen_model": one["chosen_model"],
            "accuracy_vs_gold": one["accuracy_vs_gold"],
            "agreement_with_teacher": one["agreement_with_teacher"],
        },
    )


def run_modes_side_by_side(args: argparse.Namespace) -> dict:
    """The sample and cascade asked synchronously, then through the Batch API, on the same budgets and seed."""
    if args.teacher != "openai":
        raise SystemExit("scalellm bench: --teacher-mode batch needs --teacher openai (the Batch API is an endpoint's)")
    return _side_by_side(
        args,
        "teacher_mode",
        ["sync", "batch"],
        lambda mode: {"channel": mode},
        lambda report, one: {
            "budget": one["budget"],
            "teacher_requests": one["teacher_requests"],
            "teacher_cost_usd": one["teacher_cost_usd"],
            "seconds_teacher_measured": one["seconds_teacher_measured"],
            "chosen_model": one["chosen_model"],
            "accuracy_vs_gold": one["accuracy_vs_gold"],
        },
    )


def _side_by_side(args, axis: str, values: list[str], overlay, columns) -> dict:
    """`run` once per value of `axis` (its flags from `overlay(value)`), same budgets and seed: `<out>_<value>.json`
    each, and `<out>` with every run's `columns(report, run)` side by side."""
    out = Path(args.out)
    reports, paths = {}, {}
    for value in values:
        print(f"{axis.replace('_', ' ')} {value}:", flush=True)
        paths[value] = str(out.with_name(f"{out.stem}_{value}{out.suffix}"))
        reports[value] = run(argparse.Namespace(**{**vars(args), **overlay(value), "out": paths[value]}))
    rows = [{axis: value, **columns(report, one)} for value, report in reports.items() for one in report["runs"]]
    print(pd.DataFrame(rows).sort_values("budget", kind="stable").to_string(index=False), flush=True)
    side_by_side = {"data": args.data, f"{axis}s": list(reports), "runs": rows, "reports": paths}
    out.write_text(json.dumps(side_by_side, indent=1))
    return side_by_side


def run(args: argparse.Namespace) -> dict:
    df = _load(args)
    labels = sorted(df["label"].unique())
    task = bench_task(args, labels)
    is_eval = (df["split"] == args.eval_split).to_numpy() if args.eval_split else np.zeros(len(df), bool)
    gold = df["label"].to_numpy()

    start = time.perf_counter()
    embedder = bench_embedder(args)
    X = embedder.fit_embed(df["text"], log=lambda m: print(m, flush=True))
    embed_seconds = time.perf_counter() - start

    simulated = teacher_kind(args.teacher).simulated
    if simulated:

        def teacher(latency_ms: float = args.teacher_latency_ms) -> Teacher:
            return _teacher_options(args, latency_ms).build(task, df, X)

        keys = df["id"].astype(str).tolist()
        instant = teacher(0.0).label_batch(list(zip(keys, df["text"]))).answers  # what it would say, for free
        teacher_says = np.array([instant[k].label for k in keys], dtype=object)
    else:  # a real LLM's answers are known only where it was asked: the baseline's rows
        teacher = _real_teacher(args, task)
        teacher_says = np.full(len(df), None, dtype=object)
    baseline = _baseline(args, df, teacher(), teacher_says, gold, is_eval, simulated=simulated)

    # A real LLM's answers are shared across budgets (a larger random sample contains the smaller one), so each
    # run's teacher time is projected from the measured rate instead of re-paying for the same rows.
    shared = None if simulated else SharedCache()
    runs = []
    for budget in [int(b) for b in args.budgets.split(",") if b]:
        runs.append(
            _one_run(
                args,
                task=replace(task, budget=budget),
                df=df,
                X=X,
                gold=gold,
                is_eval=is_eval,
                teacher=teacher(),
                teacher_says=teacher_says,
                embed_seconds=embed_seconds,
                baseline_seconds=baseline["seconds"],
                shared=shared,
            ).summary
        )
        print(
            f"budget {budget}: {runs[-1]['chosen_model']} acc vs gold {runs[-1]['accuracy_vs_gold']:.4f}, "
            f"agreement with teacher {runs[-1]['agreement_with_teacher']}, "
            f"speedup {runs[-1]['speedup_vs_baseline']:.1f}x",
            flush=True,
        )

    peak_pipeline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the 1M-row probes below
    inference = _inference_rate(X, gold, runs, args.seed, teacher_says if simulated else gold, rows=args.probe_rows)
    report = {
        "data": args.data,
        "rows": len(df),
        "resampled_from_rows": df.attrs.get("resampled_from_rows"),
        "classes": len(labels),
        "eval_rows": int(is_eval.sum()) if args.eval_split else "rows the teacher never saw, per run",
        "embedder": embedder.name,
        "embed_seconds": round(embed_seconds, 3),
        "teacher": _teacher_summary(args, teacher_says, gold, simulated, shared, None if simulated else teacher()),
        "baseline": baseline,
        "runs": runs,
        **inference,
        **_embedding_io(X, rows=args.probe_rows),
        "peak_rss_mb": round(peak_pipeline, 1),
        "peak_rss_mb_with_1m_row_probes": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    if args.plot:
        _plots(report, Path(args.out))
    return report


def bench_task(args, labels: list[str]) -> TaskSpec:
    """The task the benchmark runs the flow with: the file's labels, the command's sampling, candidates and
    cascade settings, everything else at the tasks file's defaults (as a task in tasks.yaml would have)."""
    return parse_task(
        {
            "name": "bench",
            "instruction": "Label the text.",
            "labels": labels,
            "budget": 10,
            "gold_column": "label",
            "sampling": args.sampling,
            "seed": args.seed,
            "candidates": args.candidates.split(","),
            "cascade_budget": args.cascade_budget,
            "prune_candidates": not getattr(args, "no_prune", False),
            "cascade_target_agreement": args.cascade_target,
            "cascade_delta": getattr(args, "cascade_delta", None),
            "suspect_labels": getattr(args, "suspect_labels", "keep"),
        }
    )


def bench_embedder(args) -> Embedder:
    """The embedder the code location would build for `SCALELLM_EMBEDDER=<--embedder>`: the same constructor over the
    same settings (model, batch size, rate limits…), the command's flags overlaid."""
    settings = Settings.from_env()
    options = embedder_resource(
        settings, settings.openai_api_key, kind=args.embedder, dim=args.dim, seed=getattr(args, "seed", None)
    )
    missing = options.spec.missing()
    if missing:
        raise SystemExit(f"scalellm bench: --embedder {args.embedder}: {missing}")
    return options.build()


def _load(args) -> pd.DataFrame:
    path = Path(args.data)
    raw = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    for col in (args.text_column, args.label_column, *([args.split_column] if args.split_column else [])):
        if col not in raw.columns:
            raise SystemExit(f"scalellm bench: column {col!r} not in {path} (columns: {list(raw.columns)})")
    if args.eval_split and not args.split_column:
        raise SystemExit("scalellm bench: --eval-split needs --split-column")
    df = pd.DataFrame(
        {
            "id": raw[args.id_column] if args.id_column in raw.columns else np.arange(len(raw)),
            "text": raw[args.text_column].astype(str),
            "label": raw[args.label_column].astype(str),
            "split": raw[args.split_column].astype(str) if args.split_column else "all",
        }
    )
    if args.max_rows and args.max_rows < len(df):
        df = df.sample(n=args.max_rows, random_state=args.seed)
    df = df.reset_index(drop=True)
    if args.resample_to and args.resample_to > len(df):
        df = resample(df, args.resample_to, args.seed)
    return df


def resample(df: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows: every original once, then rows drawn again with replacement, each keeping its label and split
    (so evaluation rows stay unseen) under a new id and a text made distinct by its copy number. The baseline then
    pays for `rows` distinct questions, as on a real corpus of that size, and so does the sample."""
    extra = np.random.default_rng(seed).integers(0, len(df), rows - len(df))
    copies = df.iloc[extra].reset_index(drop=True)
    copy_number = pd.Series(extra).groupby(extra).cumcount().to_numpy() + 1
    copies["text"] = copies["text"] + " [" + pd.Series(copy_number).astype(str) + "]"
    out = pd.concat([df, copies], ignore_index=True)
    out["id"] = np.arange(len(out))
    out.attrs["resampled_from_rows"] = len(df)
    return out


def _baseline(args, df, teacher, teacher_says, gold, is_eval, *, simulated: bool) -> dict:
    """The same teacher asked about rows one row per request, at the same latency and concurrency, timed; the
    time for every row is extrapolated unless every row was asked. The rows are drawn (seeded) from those the
    flow's sample never sees (the eval split, when there is one), so a real teacher's answers there also measure
    its accuracy and the students' agreement with it (they fill `teacher_says`)."""
    measured = len(df) if args.baseline_sample <= 0 else min(args.baseline_sample, len(df))
    pool = np.flatnonzero(is_eval) if is_eval.any() else np.arange(len(df))
    picked = (
        np.sort(np.random.default_rng(args.seed).choice(pool, min(measured, len(pool)), replace=False))
        if not simulated
        else np.arange(measured)
    )  # the simulation keeps its historical rows
    session = TeacherSession(
        teacher, MemoryCache(), df.set_index("id")["text"], batch_size=1, concurrency=args.teacher_concurrency
    )
    start = time.perf_counter()
    answers = session.ask(df["id"].to_numpy()[picked])
    seconds = time.perf_counter() - start
    if not simulated:
        teacher_says[picked] = answers["teacher_label"].to_numpy()
    known = np.array([v is not None for v in teacher_says])
    scope = (is_eval if is_eval.any() else np.ones(len(df), bool)) & known
    return {
        "teacher_calls": len(df),
        "seconds": round(seconds * len(df) / len(picked), 3),
        "seconds_measured_or_extrapolated": "measured"
        if len(picked) == len(df)
        else f"extrapolated from {len(picked):,} row-by-row calls measured ({seconds:.2f}s)",
        "accuracy_vs_gold": round(float((teacher_says[scope] == gold[scope]).mean()), 4),
        "accuracy_measured_on_rows": int(scope.sum()),
        "prompt_tokens": session.stats.prompt_tokens,
        "completion_tokens": session.stats.completion_tokens,
    }


class SharedCache(MemoryCache):
    """A cache kept across budgets, which also measures what asking cost: seconds per answered row."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.rows = 0

    def rate(self) -> float:
        return self.seconds / max(self.rows, 1)


def _teacher_options(args, latency_ms: float) -> TeacherResource:
    """The teacher the code location would build for `SCALELLM_TEACHER=<--teacher>`: the same constructor over the
    same settings (rate limits, pace folder, timeouts…), the command's flags overlaid; the endpoint and key default
    to OPENAI_BASE_URL and OPENAI_API_KEY."""
    settings = Settings.from_env()
    return teacher_resource(
        settings,
        settings.openai_api_key,
        kind=args.teacher,
        model=args.model,
        base_url=args.base_url,
        simulated_accuracy=args.teacher_accuracy,
        simulated_bias=args.teacher_bias,
        simulated_latency_ms=latency_ms,
        seed=args.seed,
        local_model=args.local_model,
        local_threads=args.local_threads,
        concurrency=args.teacher_concurrency,
        mode=_mode(args),
    )


def _real_teacher(args, task: TaskSpec):
    """One teacher for the whole bench (its cache of answers and, for `local`, its model process are shared)."""
    options = _teacher_options(args, args.teacher_latency_ms)
    missing = options.spec.missing(options)
    if missing:
        raise SystemExit(f"scalellm bench: --teacher {args.teacher}: {missing}")
    model = options.build(task, None, None)
    return lambda: model


def _mode(args) -> str:
    """How this run asks the teacher: `batch` only in the batch run of `--teacher-mode batch`."""
    return getattr(args, "channel", "sync")


def _batch_channel(args, teacher, task):
    """The Batch API for this run's sample and cascade; None unless `_mode` is batch (`batch_round` decides)."""
    from scalellm_dagster.teachers.batch_api import MemoryBatchRegistry

    options = _teacher_options(args, args.teacher_latency_ms)
    return options.batch_round(task, teacher, MemoryBatchRegistry(), lambda m: print(m, flush=True), {})


def _teacher_summary(args, teacher_says, gold, simulated: bool, shared, teacher: Teacher | None) -> dict:
    common = {"concurrency": args.teacher_concurrency, "rows_per_request": args.teacher_batch_size}
    if simulated:
        return {
            "name": args.teacher,
            "accuracy_vs_gold": round(float((teacher_says == gold).mean()), 4),
            "configured_accuracy": args.teacher_accuracy,
            "bias": args.teacher_bias,
            "latency_ms": args.teacher_latency_ms,
            **common,
        }
    known = np.array([v is not None for v in teacher_says])
    counts = pd.Series(teacher_says[known]).value_counts()
    return {
        "name": f"{teacher.provider}:{teacher.model}",
        "accuracy_vs_gold": round(float((teacher_says[known] == gold[known]).mean()), 4),
        "accuracy_measured_on_rows": int(known.sum()),
        "answer_share_by_label": {str(k): round(v / known.sum(), 3) for k, v in counts.items()},
        "seconds_per_row_in_sample_requests": round(shared.rate(), 4) if shared else None,
        **common,
    }


def _one_run(
    args,
    *,
    task,
    df,
    X,
    gold,
    is_eval,
    teacher,
    teacher_says,
    embed_seconds,
    baseline_seconds,
    shared: SharedCache | None = None,
) -> FlowRun:
    run, t = run_flow(
        task=task,
        df=df,
        X=X,
        teacher=teacher,
        is_eval=is_eval,
        batch_size=args.teacher_batch_size,
        concurrency=args.teacher_concurrency,
        cache=shared,
        batch=_batch_channel(args, teacher, task),
    )
    measured_seconds = t["teacher"]
    if shared is not None:  # what this run paid, and the time its whole sample costs at the measured rate
        shared.seconds += t["teacher"]
        shared.rows += t["asked"]
        t["teacher"] = shared.rate() * (len(run.sample.ids) + t["cascade_calls"] + t["reask_calls"])
    chosen_pos = pd.Series(np.arange(len(df)), index=df["id"].to_numpy())[run.sample.ids].to_numpy()
    # accuracy on rows the teacher never saw: the eval split, or every row outside the sample
    unseen = is_eval.copy() if is_eval.any() else np.ones(len(df), bool)
    unseen[chosen_pos] = False
    known = np.array([v is not None for v in teacher_says])
    total = embed_seconds + t["teacher"] + t["train"] + t["predict"]
    calls = len(run.sample.ids) + t["cascade_calls"] + t["reask_calls"]
    run.summary = {
        "budget": task.budget,
        "teacher_calls": calls,
        "teacher_calls_fraction": round(calls / len(df), 4),
        "chosen_model": run.choice,
        "teacher_noise_estimate": round(t["teacher_noise"], 4),  # share of sample labels cleanlab flags
        "suspect_labels": task.suspect_labels,
        "suspects_flagged": run.review.flagged,
        "suspects_reasked": run.review.reasked,
        "suspect_answers_changed_by_reask": run.review.changed_by_reask,
        "suspects_left_out_of_training": run.review.dropped,
        "accuracy_vs_gold": round(float((run.labels[unseen] == gold[unseen]).mean()), 4),
        "agreement_with_teacher": round(float((run.labels[unseen & known] == teacher_says[unseen & known]).mean()), 4),
        "agreement_measured_on_rows": int((unseen & known).sum()),
        **_guarantee_summary(t["guarantee"]),
        "seconds_total": round(total, 3),
        "seconds_teacher": round(t["teacher"], 3),
        "seconds_teacher_basis": "measured" if shared is None else "projected from the measured seconds per row",
        "seconds_teacher_measured": round(measured_seconds, 3),
        "teacher_mode": _mode(args),
        "teacher_requests": t["requests"],
        "teacher_cost_usd": round(t["cost_usd"], 6),
        "seconds_train": round(t["train"], 3),
        "seconds_predict": round(t["predict"], 3),
        "speedup_vs_baseline": round(baseline_seconds / total, 2),
        "speedup_excluding_embedding": round(baseline_seconds / (total - embed_seconds), 2),
    }
    return run


def _guarantee_summary(guarantee) -> dict:
    if guarantee is None:
        return {}
    return {
        "cascade_delta": guarantee.delta,
        "cascade_guaranteed_agreement": round(guarantee.guaranteed_agreement, 4),
        "cascade_target_reached": guarantee.reached,
        "cascade_rows_needed": guarantee.rows_needed,
    }


def _inference_rate(X, gold, runs, seed, teacher_says, rows: int = 1_000_000) -> dict:
    """Students predicting `rows` d-dim float32 rows (tiled from the corpus), trained on 2,000 teacher labels.

    Slow students (RBF SVM, random forest) are timed on 20,000 rows and reported per second; the 1M-row figure is
    measured only for students fast enough to finish it in seconds.
    """
    take = random_sample(np.arange(len(X)), min(2000, len(X)), seed)
    chosen = runs[-1]["chosen_model"] if runs else "logistic_regression"
    names = list(dict.fromkeys([chosen, "logistic_regression", "linear_svm", "ridge"]))
    big = np.ascontiguousarray(np.resize(X, (rows, X.shape[1])))
    rates = {}
    for name in names:
        model = fit_student(name, X[take], teacher_says[take], seed)
        start = time.perf_counter()
        probe = min(20_000, rows)
        predict_with_confidence(model, big[:probe])
        rate = probe / (time.perf_counter() - start)
        if rows / rate < 20:
            start = time.perf_counter()
            predict_with_confidence(model, big)
            rate = rows / (time.perf_counter() - start)
            rates[name] = {"rows": rows, "rows_per_second": round(rate)}
        else:
            rates[name] = {"rows": probe, "rows_per_second": round(rate)}
    return {
        "inference_model": chosen,
        "inference_rows_per_second": rates[chosen]["rows_per_second"],
        "inference_by_model": rates,
    }


def _embedding_io(X: np.ndarray, rows: int = 1_000_000) -> dict:
    """Writing 1M x d float32 vectors to DuckDB and reading them back into numpy, against a plain memory copy."""
    from scalellm_dagster.resources.warehouse import Warehouse

    big = np.ascontiguousarray(np.resize(X, (rows, X.shape[1])))
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(database=f"{tmp}/bench.duckdb")
        wh.write_embeddings(EMBEDDINGS, np.arange(rows), big)
        start = time.perf_counter()
        _, back = wh.read_embeddings(EMBEDDINGS)
        read = time.perf_counter() - start
    assert back.shape == big.shape
    start = time.perf_counter()
    big.copy()
    copy = time.perf_counter() - start
    return {
        "embeddings_read_rows": rows,
        "dim": int(X.shape[1]),
        "embeddings_read_seconds": round(read, 3),
        "memory_copy_seconds": round(copy, 3),
    }


def _plots(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([r["teacher_calls"] for r in runs], [r["accuracy_vs_gold"] for r in runs], "o-", label="ScaleLLM")
    ax.axhline(report["baseline"]["accuracy_vs_gold"], color="black", ls="--", label="teacher on every row")
    ax.set_xscale("log")
    ax.set_xlabel("teacher calls")
    ax.set_ylabel("accuracy vs gold (unseen rows)")
    ax.set_title(Path(report["data"]).parent.name or report["data"])
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(out.with_name(out.stem + "_budget.png"), dpi=90, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.scatter([r["seconds_total"] for r in runs], [r["accuracy_vs_gold"] for r in runs], label="ScaleLLM")
    for r in runs:
        ax.annotate(f"{r['budget']}", (r["seconds_total"], r["accuracy_vs_gold"]), fontsize=8)
    ax.scatter(
        [report["baseline"]["seconds"]],
        [report["baseline"]["accuracy_vs_gold"]],
        marker="s",
        color="black",
        label="teacher on every row",
    )
    ax.set_xscale("log")
    ax.set_xlabel("seconds to label every row (log)")
    ax.set_ylabel("accuracy vs gold")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(out.with_name(out.stem + "_latency.png"), dpi=90, bbox_inches="tight")
    plt.close(fig)
