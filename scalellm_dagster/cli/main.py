"""`scalellm`: run the pipeline from a terminal and print where the results are."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from scalellm_dagster.names import WAREHOUSE_TAGS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scalellm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize every asset (and run every check) of the configured pipeline")
    demo = sub.add_parser("demo", help="the same on the defaults: the bundled banking77 demo, offline")
    for p in (run, demo):
        p.add_argument(
            "--multiprocess",
            action="store_true",
            help="run each step in its own process, as `dagster dev` does (slower to start)",
        )
        p.add_argument("--verbose", action="store_true", help="print Dagster's DEBUG events too")
    run.add_argument(
        "--retrain",
        nargs="*",
        metavar="TASK",
        help="replace these tasks' models (none named: every task's) instead of keeping them: a new sample from the "
        "corpus as it is, candidates, report and student, then every row predicted again",
    )
    est = sub.add_parser(
        "estimate",
        help="dry run: teacher tokens, cost and time per task vs the row-by-row "
        "baseline, before any request (reads the corpus source; writes nothing)",
    )
    est.add_argument("--budget", type=int, help="override every task's budget")
    probe = sub.add_parser(
        "probe-batch",
        help="ask the configured teacher about the same rows at several rows per "
        "request and compare with its one-row answers (agreement, tokens, time)",
    )
    probe.add_argument("--task", help="task name in the tasks file (default: the first)")
    probe.add_argument("--rows", type=int, default=40, help="corpus rows asked at every size (seeded sample)")
    probe.add_argument("--sizes", default="1,5,10,20", help="rows per request, comma-separated")
    probe.add_argument(
        "--max-agreement-loss",
        type=float,
        default=0.02,
        help="the largest size within this loss of agreement with the one-row answers is advised",
    )
    batch = sub.add_parser("batch", help="the teacher's Batch API batches: list them, or cancel one")
    from scalellm_dagster.cli.batches import add_arguments as batch_arguments

    batch_arguments(batch)
    bench = sub.add_parser(
        "bench",
        help="benchmark the engine on your own labelled file against asking the "
        "(simulated) teacher about every row; writes a JSON report",
    )
    from scalellm_dagster.cli.bench import add_arguments

    add_arguments(bench)
    args = parser.parse_args(argv)
    from scalellm_dagster.core.corpus import CorpusError
    from scalellm_dagster.settings import SettingError
    from scalellm_dagster.tasks_config import TaskConfigError

    try:
        return _dispatch(args)
    except (SettingError, TaskConfigError, CorpusError) as exc:  # configuration: the message is the whole story
        print(f"scalellm: {exc}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "batch":
        from scalellm_dagster.cli.batches import run as batch_command

        return batch_command(args)
    if args.command == "bench":
        from scalellm_dagster.cli.bench import run, run_modes_side_by_side, run_side_by_side

        if args.teacher_mode == "batch":
            run_modes_side_by_side(args)
            print(f"wrote {args.out} (sync and batch side by side) and one report per mode beside it")
            return 0
        if "," in args.teacher:
            run_side_by_side(args)
            print(f"wrote {args.out} (the teachers side by side) and one report per teacher beside it")
            return 0
        report = run(args)
        print(
            f"wrote {args.out}: {report['rows']:,} rows, baseline {report['baseline']['seconds']:,.1f}s "
            f"({report['baseline']['seconds_measured_or_extrapolated']}), inference "
            f"{report['inference_rows_per_second']:,} rows/s, peak RSS {report['peak_rss_mb']:,.0f} MB"
        )
        return 0
    if args.command == "estimate":
        return estimate(args.budget)
    if args.command == "probe-batch":
        return probe_batch(args)
    return run_all(multiprocess=args.multiprocess, verbose=args.verbose, retrain=getattr(args, "retrain", None))


def retrain_tags(retrain: list[str] | None, tasks_path: str) -> dict:
    """The run tag that replaces the named tasks' models (`[]`: every task's); a name not in the tasks file is an
    error naming the known ones."""
    if retrain is None:
        return {}
    from scalellm_dagster.assets.deployed_model import RETRAIN_TAG
    from scalellm_dagster.settings import SettingError
    from scalellm_dagster.tasks_config import load_tasks

    known = [t.name for t in load_tasks(tasks_path)]
    unknown = [name for name in retrain if name not in known]
    if unknown:
        raise SettingError(f"--retrain: no task named {', '.join(unknown)} in {tasks_path}; tasks: {', '.join(known)}")
    return {RETRAIN_TAG: ",".join(retrain) if retrain else "all"}


def run_all(multiprocess: bool = False, verbose: bool = False, retrain: list[str] | None = None) -> int:
    from scalellm_dagster.settings import default_data_dir, ensure_dagster_home

    os.environ.setdefault("DAGSTER_HOME", str(default_data_dir() / "dagster_home"))
    ensure_dagster_home(Path(os.environ["DAGSTER_HOME"]))
    os.environ.setdefault("TQDM_DISABLE", "1")

    from dagster import DagsterInstance

    from scalellm_dagster import definitions
    from scalellm_dagster.cli.failures import failure_lines
    from scalellm_dagster.resources.postgres import redact
    from scalellm_dagster.settings import Settings
    from scalellm_dagster.teachers.teacher_kinds import teacher_kind

    settings = Settings.from_env()
    tags = {**WAREHOUSE_TAGS, **retrain_tags(retrain, settings.tasks)}
    simulated = teacher_kind(settings.teacher).simulated
    print(
        f"scalellm: corpus {redact(settings.corpus)}\n          tasks  {settings.tasks}\n"
        f"          warehouse {settings.duckdb_path}\n          embedder {settings.embedder}, "
        f"teacher {settings.teacher}{' (simulation of an LLM from gold labels)' if simulated else ''}"
        + (f"\n          cluster {settings.cluster}" if settings.cluster else "")
        + (f"\n          predictions also to {redact(settings.predictions_to)}" if settings.predictions_to else "")
        + (f"\n          replacing the models of: {tags['scalellm/retrain']}" if retrain is not None else "")
    )
    start = time.perf_counter()
    instance = DagsterInstance.get()
    run_config = {"loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "INFO"}}}}
    from scalellm_dagster.cli.workspace_run import (
        ensure_pool_limit,
        execute_as_workspace_run,
        free_slots_of_killed_runs,
    )
    from scalellm_dagster.names import warehouse_pool

    pool = warehouse_pool(settings.duckdb_path)
    said = ensure_pool_limit(instance, pool)
    if said:
        print(f"scalellm: {said}")
    for run_id in free_slots_of_killed_runs(instance, pool):
        print(f"scalellm: run {run_id} was killed: marked failed, its slot of pool {pool!r} freed")
    result = execute_as_workspace_run(
        definitions.all_job_multiprocess if multiprocess else definitions.all_job,
        instance,
        run_config,
        tags=tags,
    )
    success, run_id, causes = result.success, result.run_id, failure_lines(result.events)
    seconds = time.perf_counter() - start
    if not success:
        print(
            f"\nscalellm: run {run_id} FAILED after {seconds:.0f}s (tracebacks in the log above and the Dagster "
            "UI). Cause:" + "".join(f"\n  {line}" for line in causes or ["no step failed; see the log above"]),
            file=sys.stderr,
        )
        return 1
    from scalellm_dagster.cli.summary import print_summary

    print_summary(settings, f"run {run_id}", seconds)
    if causes:  # checks that failed without blocking anything
        print(
            "\nscalellm: the run succeeded, but these checks failed:" + "".join(f"\n  {line}" for line in causes),
            file=sys.stderr,
        )
    return 0


def estimate(budget: int | None) -> int:
    import dataclasses

    from scalellm_dagster.resources.from_settings import build_resources
    from scalellm_dagster.resources.postgres import redact
    from scalellm_dagster.settings import Settings
    from scalellm_dagster.tasks_config import load_tasks

    settings = Settings.from_env()
    resources = build_resources(settings)
    corpus = resources["source"].load()
    teacher = resources["teacher"]
    print(
        f"scalellm estimate: {len(corpus):,} rows in {redact(settings.corpus)}; "
        f"teacher {teacher.kind}:{teacher.model}, "
        f"{teacher.batch_size} rows/request, concurrency {teacher.concurrency}, prices in/out "
        f"${teacher.price_in_per_mtok}/${teacher.price_out_per_mtok} per M tokens (tokens estimated ~4 chars)"
        + teacher.limits_note()
        + (
            f"; teacher mode {teacher.mode} (Batch API at {teacher.batch_price_factor:.0%} of the price, "
            f"{teacher.batch_min_rows}+ rows)"
            if teacher.kind == "openai"
            else ""
        )
    )
    texts = corpus["text"].sample(min(200, len(corpus)), random_state=0).tolist()
    print(_embedding_estimate(resources["embedder"], texts, len(corpus)))
    tasks = [dataclasses.replace(t, budget=budget) if budget else t for t in load_tasks(settings.tasks)]
    for task in tasks:
        drawn, why = _budget_to_draw(task, resources["warehouse"], settings.duckdb_path, budget)
        table = teacher.cost_estimate(task, texts, len(corpus), budget=drawn)
        print(f"\n{task.name} (budget {drawn:,}: {why})\n" + table.to_markdown(index=False, floatfmt=",.4f"))
    if settings.shared_requests:
        print(_shared_estimate(tasks, teacher, corpus))
    return 0


def _budget_to_draw(task, warehouse, database: str, budget: int | None) -> tuple[int, str]:
    """What the sample step would draw: `--budget`, else the task's budget or, for a task that follows the report's
    advice, the advice kept in an existing warehouse (the step resolves it the same way)."""
    if budget:
        return budget, "--budget"
    if not Path(database).is_file():
        return task.budget, "task budget" + (
            " (no warehouse yet to take advice from)" if task.follow_budget_advice else ""
        )
    from scalellm_dagster.resources import TaskStore

    return TaskStore(warehouse=warehouse).effective_budget(task)


def _embedding_estimate(embedder, texts: list[str], rows: int) -> str:
    """The embeddings every task shares: free offline; at a remote endpoint, tokens, cost and time under its limits
    for a first run (a refresh embeds only new or edited rows)."""
    import pandas as pd

    estimate = embedder.cost_estimate(texts, rows)
    if estimate is None:
        return f"\nembeddings: {embedder.kind}, offline (no requests, nothing to pay)"
    row = estimate.as_row()
    row = {"input_tokens" if k == "prompt_tokens" else k: v for k, v in row.items() if k != "completion_tokens"}
    return (
        f"\nembeddings: {embedder.kind}:{embedder.model}, ${embedder.price_per_mtok} per M tokens, "
        f"{embedder.expected_seconds_per_request:g} s a request assumed, concurrency {embedder.concurrency}"
        f"{embedder.limits_note()}; "
        "a first run embeds every row once, a refresh only new or edited rows, and every task reuses them\n"
        + pd.DataFrame([row]).to_markdown(index=False, floatfmt=",.4f")
    )


def _shared_estimate(tasks, teacher, corpus) -> str:
    """The rows the tasks' random samples share, asked task by task or jointly (SCALELLM_SHARED_REQUESTS)."""
    import pandas as pd

    from scalellm_dagster.assets.shared_requests_asset import shared_estimate
    from scalellm_dagster.flow import initial_sample_ids
    from scalellm_dagster.flow.shared_requests import shared_rows

    joint = [t for t in tasks if t.sampling == "random"]  # other samplings need the embeddings: the run logs theirs
    if len(joint) < 2:
        return (
            "\nshared requests: fewer than two tasks sample at random; the run's shared_teacher_requests logs "
            "its estimate"
        )
    ids = corpus["id"].to_numpy()
    both = shared_rows({t.name: pd.Series(initial_sample_ids(ids, None, t, t.budget)) for t in joint})
    texts = corpus.set_index("id").loc[both, "text"].tolist()
    table = shared_estimate(joint, teacher, texts)
    return (
        f"\nshared requests ({', '.join(t.name for t in joint)}): {len(both):,} rows in two or more samples\n"
        + table.to_markdown(index=False, floatfmt=",.4f")
    )


def probe_batch(args) -> int:
    from scalellm_dagster.cli.batch_probe import largest_within, probe_batch_sizes
    from scalellm_dagster.resources.from_settings import build_resources
    from scalellm_dagster.settings import Settings
    from scalellm_dagster.tasks_config import TaskConfigError, load_tasks

    settings = Settings.from_env()
    resources = build_resources(settings)
    tasks = load_tasks(settings.tasks)
    task = next((t for t in tasks if t.name == args.task), None) if args.task else tasks[0]
    if task is None:
        raise TaskConfigError(
            f"--task {args.task!r}: no such task in {settings.tasks} (tasks: {', '.join(t.name for t in tasks)})"
        )
    corpus = resources["source"].load()
    rows = corpus.sample(min(args.rows, len(corpus)), random_state=0).reset_index(drop=True)
    teacher = resources["teacher"]
    model = teacher.build(task, rows, None)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    gold = rows[task.gold_column].astype(str) if task.gold_column in rows.columns else None
    table = probe_batch_sizes(model, rows[["id", "text"]], sizes, teacher.effective_concurrency, gold)
    print(f"scalellm probe-batch: task {task.name}, teacher {model.provider}:{model.model}, {len(rows)} rows\n")
    print(table.to_markdown(index=False))
    best = largest_within(table, args.max_agreement_loss)
    print(
        f"\nlargest batch within {args.max_agreement_loss:.0%} agreement loss: {best} rows per request "
        f"(SCALELLM_TEACHER_BATCH_SIZE={best})"
    )
    return 0
