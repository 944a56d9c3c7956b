"""`scalellm batch list` and `scalellm batch cancel`: the teacher's Batch API batches the warehouse records."""

from __future__ import annotations

import sys

import pandas as pd

from scalellm_dagster.resources.warehouse_tables import CACHE_SCHEMA


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="batch_action", required=True)
    listing = actions.add_parser("list", help="the batches the warehouse records, open ones first")
    listing.add_argument("--all", action="store_true", help="closed batches too (default: only open ones)")
    cancel = actions.add_parser(
        "cancel",
        help="cancel a running batch at the endpoint: the step waiting on it stops, keeping the answers the batch "
        "returned; the next run asks the other rows again",
    )
    cancel.add_argument("batch_id")


def run(args) -> int:
    from scalellm_dagster.resources.from_settings import build_resources
    from scalellm_dagster.settings import Settings

    settings = Settings.from_env()
    resources = build_resources(settings)
    warehouse = resources["warehouse"]
    batches = _recorded(warehouse)
    if args.batch_action == "list":
        shown = batches if args.all else batches[batches["status"].isna()]
        if shown.empty:
            print("scalellm batch: no open batches" + ("" if args.all else " (--all shows the closed ones)"))
            return 0
        shown = shown.assign(status=shown["status"].fillna("open (a run resumes it)"))
        print(shown.to_markdown(index=False))
        return 0
    known = batches[batches["batch_id"] == args.batch_id]
    if known.empty:
        print(
            f"scalellm batch: {args.batch_id!r} is not a batch this warehouse records "
            f"({warehouse.database}); `scalellm batch list --all` shows them",
            file=sys.stderr,
        )
        return 2
    teacher = resources["teacher"]
    from scalellm_dagster.openai_client import make_client

    client = make_client(teacher.base_url, settings.openai_api_key, teacher.timeout_seconds, teacher.max_retries)
    batch = client.batches.cancel(args.batch_id)
    print(
        f"scalellm batch: {args.batch_id} is {batch.status} at {teacher.base_url or 'OpenAI'}; the step waiting on "
        "it stops and keeps the answers it returned"
    )
    return 0


def _recorded(warehouse) -> pd.DataFrame:
    columns = ["batch_id", "task", "rows", "submitted_at", "status", "note", "run_id"]
    if not warehouse.table_exists(f"{CACHE_SCHEMA}.teacher_batches"):
        return pd.DataFrame(columns=columns)
    return warehouse.read_df(
        f"""SELECT {", ".join(columns)} FROM {CACHE_SCHEMA}.teacher_batches
            ORDER BY status IS NOT NULL, submitted_at DESC"""
    )
