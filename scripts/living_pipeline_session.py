"""A scripted session of the living pipeline, on a copy of the demo in a temporary folder (offline).

    .venv/bin/python scripts/living_pipeline_session.py

1. the demo corpus (minus 500 held-back rows, as a folder of Parquet files) is materialized with one task;
2. a new file with the 500 held-back rows is dropped: corpus_source_sensor reports a new version of the source, and
   the assets' automation conditions (evaluated as the automation sensor would) request one run that embeds and
   predicts only the new rows, with the deployed model;
3. a second task is added to the tasks file: the conditions request that task's branch only; `embeddings` keeps
   its materialization count;
4. the model policy sensor's tick says why no model is due for replacement.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from scalellm_dagster.names import ALL_JOB

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPIC_TASK = """tasks:
  - name: topic
    instruction: Decide which support team should handle the online-banking customer's message.
    gold_column: topic
    budget: 400
    labels: [cards, payments_and_cash, transfers, top_ups, fees_and_exchange, account_and_security]
"""
CARD_TASK = """  - name: is_card
    instruction: Is the message about a payment card?
    gold_column: is_card
    budget: 200
    labels: {card: about a card, other: about something else}
"""


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="scalellm-session-"))
    drop, tasks = tmp / "drop", tmp / "tasks.yaml"
    drop.mkdir()
    tasks.write_text(TOPIC_TASK)
    os.environ.update(
        {
            "SCALELLM_CORPUS": str(drop),
            "SCALELLM_TASKS": str(tasks),
            "TQDM_DISABLE": "1",
            "SCALELLM_DUCKDB_PATH": str(tmp / "warehouse.duckdb"),
            "DAGSTER_HOME": str(tmp / "home"),
        }
    )

    import duckdb
    import pandas as pd
    from dagster import AssetKey, DagsterInstance, build_sensor_context, evaluate_automation_conditions

    from scalellm_dagster.definitions import build_definitions
    from scalellm_dagster.settings import DEMO_CORPUS, Settings, ensure_dagster_home

    ensure_dagster_home(tmp / "home")
    corpus = pd.read_parquet(DEMO_CORPUS)
    corpus["is_card"] = (corpus["topic"] == "cards").map({True: "card", False: "other"})
    corpus.iloc[:-500].to_parquet(drop / "part-000.parquet", index=False)

    def run(defs, instance, selection=None):
        result = defs.resolve_job_def(ALL_JOB).execute_in_process(
            instance=instance,
            asset_selection=selection,
            raise_on_error=True,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        return {
            e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
        }

    def tick(defs, name, instance, cursor):
        return defs.resolve_sensor_def(name).evaluate_tick(
            build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        )

    def wanted(defs, instance, cursor):
        """What the automation conditions request now, and the cursor for the next evaluation."""
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        keys = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if result.get_num_requested(k)]
        return keys, result.cursor

    def embeddings_count(instance):
        return len(instance.fetch_materializations(AssetKey("embeddings"), limit=100).records)

    with DagsterInstance.get() as instance:
        defs = build_definitions(Settings.from_env())
        meta = run(defs, instance)
        print(
            f"1. demo materialized: corpus {meta['corpus']['dagster/row_count'].value:,} rows; embeddings "
            f"computed {meta['embeddings']['rows_computed'].value:,}; topic predictions "
            f"{meta['topic/predictions']['dagster/row_count'].value:,} rows, model "
            f"{meta['topic/predictions']['model_version'].value}"
        )
        _, cursor = wanted(defs, instance, None)
        empty = tick(defs, "corpus_source_sensor", instance, None)
        print(f"   source sensor with nothing new: {len(empty.asset_events)} report ({empty.skip_message})")

        corpus.iloc[-500:].to_parquet(drop / "part-001.parquet", index=False)
        new = tick(defs, "corpus_source_sensor", instance, empty.cursor)
        for event in new.asset_events:
            instance.report_runless_asset_event(event)
        keys, cursor = wanted(defs, instance, cursor)
        meta = run(defs, instance, keys)
        print(
            f"2. new file part-001.parquet: the sensor reported {len(new.asset_events)} new version of corpus_source "
            f"and launched {len(new.run_requests)} run; the conditions requested "
            f"{sorted(k.to_user_string() for k in keys)}"
        )
        print(
            f"   embeddings: {meta['embeddings']['rows_computed'].value:,} rows embedded, "
            f"{meta['embeddings']['rows_reused'].value:,} reused; topic predictions: "
            f"{meta['topic/predictions']['rows_predicted'].value:,} predicted, "
            f"{meta['topic/predictions']['rows_reused'].value:,} kept as they were "
            f"({meta['topic/predictions']['model_update'].value})"
        )
        again = tick(defs, "corpus_source_sensor", instance, new.cursor)
        print(f"   the same file on the next tick: {len(again.asset_events)} report")

        before = embeddings_count(instance)
        tasks.write_text(TOPIC_TASK + CARD_TASK)
        defs = build_definitions(Settings.from_env())  # the code location reloads
        keys, cursor = wanted(defs, instance, cursor)
        assert keys, "the conditions requested nothing for the new task"
        meta = run(defs, instance, keys)
        print(f"3. task is_card added: the conditions requested {sorted(k.to_user_string() for k in keys)}")
        print(
            f"   embeddings materializations before {before}, after {embeddings_count(instance)}; is_card "
            f"predictions {meta['is_card/predictions']['dagster/row_count'].value:,} rows, accuracy vs gold on "
            f"unseen rows {meta['is_card/predictions']['accuracy_vs_gold_unseen_rows'].value:.3f}"
        )
        policy = tick(defs, "model_policy_sensor", instance, None)
        print(f"4. model policy sensor: {len(policy.run_requests)} replacement ({policy.skip_message})")
    with duckdb.connect(os.environ["SCALELLM_DUCKDB_PATH"], read_only=True) as conn:
        print(
            "   tables:",
            ", ".join(
                f"{s}.{t}"
                for s, t in conn.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2"
                ).fetchall()
            ),
        )


if __name__ == "__main__":
    main()
