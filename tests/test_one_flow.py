"""One ScaleLLM flow behind both front ends: the Dagster assets and `scalellm bench` give the same sample, the
same chosen student and the same predictions for the same corpus, task, seed and simulated teacher."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance

from scalellm_dagster.cli import bench
from scalellm_dagster.flow.in_memory import run_flow
from scalellm_dagster.resources import TeacherResource
from scalellm_dagster.tasks_config import load_tasks
from tests.pipeline_helpers import query, run_pipeline


@pytest.mark.parametrize(("cascade", "suspects"), [(0, "keep"), (40, "keep"), (0, "drop")])
def test_assets_and_bench_run_the_same_flow(pipeline_env, tasks_file, cascade, suspects):
    if cascade:  # the cascade step too: rows sent back to the teacher must be the same ones
        tasks_file.write_text(tasks_file.read_text() + f"    cascade_budget: {cascade}\n")
    if suspects != "keep":  # and the suspect labels' review: the same rows flagged and left out of training
        tasks_file.write_text(tasks_file.read_text() + f"    suspect_labels: {suspects}\n")
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
    task = next(t for t in load_tasks(tasks_file) if t.name == "topic")
    corpus = pd.DataFrame(query(db, "SELECT id, text, topic FROM corpus"), columns=["id", "text", "topic"])

    # bench embeds the corpus itself, with the embedder the assets used: the vectors must agree
    args = argparse.Namespace(embedder="static", dim=64, seed=task.seed)
    X = bench.bench_embedder(args).fit_embed(corpus["text"].tolist())
    stored = dict(query(db, "SELECT id, vector FROM embeddings"))
    X_assets = np.array([stored[i] for i in corpus["id"]], dtype=np.float32)
    np.testing.assert_allclose(X, X_assets, atol=1e-5)

    teacher = TeacherResource(simulated_latency_ms=0).build(task, corpus, X)  # the code location's default kind
    run, timings = run_flow(
        task=task, df=corpus, X=X, teacher=teacher, is_eval=np.zeros(len(corpus), bool), batch_size=10, concurrency=8
    )

    sampled = [r[0] for r in query(db, "SELECT id FROM topic.labeled_sample ORDER BY sample_rank")]
    assert run.sample.ids.tolist() == sampled
    assert run.choice == query(db, "SELECT candidate FROM topic.model_selection_report WHERE chosen")[0][0]
    predicted = dict(query(db, "SELECT id, label FROM topic.predictions"))
    student = dict(query(db, "SELECT id, student_label FROM topic.predictions"))
    assert run.labels.tolist() == [predicted[i] for i in corpus["id"]]
    assert run.student_labels.tolist() == [student[i] for i in corpus["id"]]
    cascaded = query(db, "SELECT count(*) FROM topic.predictions WHERE source = 'teacher-cascade'")[0][0]
    assert (cascaded > 0) == bool(cascade) and timings["cascade_calls"] >= cascaded
    flagged = [r[0] for r in query(db, "SELECT id FROM topic.labeled_sample WHERE suspect ORDER BY sample_rank")]
    assert flagged and flagged == run.review.answers.loc[run.review.answers["suspect"], "id"].tolist()
    left_out = query(db, "SELECT count(*) FROM topic.labeled_sample WHERE valid AND NOT train")[0][0]
    assert left_out == run.review.dropped == (len(flagged) if suspects == "drop" else 0)
