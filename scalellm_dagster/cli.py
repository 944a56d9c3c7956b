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
    demo = sub.add_parser("demo", help="the same on the defaults: the bundled banking77 demo, offline")
    for p in (run, demo):
        p.add_argument("--multiprocess", action="store_true",
                       help="run each step in its own process, as `dagster dev` does (slower to start)")
        p.add_argument("--verbose", action="store_true", help="print Dagster's DEBUG events too")
    args = parser.parse_args(argv)
    return run_all(multiprocess=args.multiprocess, verbose=args.verbose)


def run_all(multiprocess: bool = False, verbose: bool = False) -> int:
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
    run_config = {"loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "INFO"}}}}
    if multiprocess:
        with execute_job(reconstructable(definitions.all_job), instance=instance, run_config=run_config) as result:
            success, run_id = result.success, result.run_id
    else:
        result = definitions.all_job().execute_in_process(instance=instance, run_config=run_config,
                                                          raise_on_error=False)
        success, run_id = result.success, result.run_id
    seconds = time.perf_counter() - start
    if not success:
        print(f"\nscalellm: run {run_id} FAILED after {seconds:.0f}s; see the Dagster UI or the log above.",
              file=sys.stderr)
        return 1
    from scalellm_dagster.summary import print_summary

    print_summary(settings, run_id=run_id, seconds=seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
