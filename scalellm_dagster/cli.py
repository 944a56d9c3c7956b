"""`scalellm`: run the pipeline from a terminal and print where the results are."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scalellm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize every asset (and run every check) of the configured pipeline")
    run.add_argument("--in-process", action="store_true", help="run all steps in this process (faster start)")
    sub.add_parser("demo", help="alias of `run` on the defaults: the bundled banking77 demo, offline")
    args = parser.parse_args(argv)
    return run_all(in_process=getattr(args, "in_process", False))


def run_all(in_process: bool = False) -> int:
    from scalellm_dagster.settings import default_data_dir

    os.environ.setdefault("DAGSTER_HOME", str(default_data_dir() / "dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TQDM_DISABLE", "1")

    from dagster import DagsterInstance, execute_job, reconstructable

    from scalellm_dagster import definitions
    from scalellm_dagster.settings import Settings

    settings = Settings.from_env()
    print(f"scalellm: corpus {settings.corpus}\n          tasks  {settings.tasks}\n"
          f"          warehouse {settings.duckdb_path}\n          embedder {settings.embedder}, "
          f"teacher {settings.teacher}{' (simulation of an LLM from gold labels)' if settings.teacher == 'simulated' else ''}")
    start = time.perf_counter()
    instance = DagsterInstance.get()
    if in_process:
        result = definitions.all_job().execute_in_process(instance=instance)
    else:
        with execute_job(reconstructable(definitions.all_job), instance=instance) as result:
            pass
    seconds = time.perf_counter() - start
    if not result.success:
        print(f"\nscalellm: run {result.run_id} FAILED after {seconds:.0f}s; see the Dagster UI or the log above.",
              file=sys.stderr)
        return 1
    from scalellm_dagster.summary import print_summary

    print_summary(settings, run_id=result.run_id, seconds=seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
