"""`scalellm bench` on a small slice of the bundled demo: the report has every field, and they add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scalellm_dagster.cli import main
from scalellm_dagster.settings import DEMO_CORPUS


def test_bench_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "bench",
                "--data",
                str(DEMO_CORPUS),
                "--label-column",
                "topic",
                "--split-column",
                "split",
                "--eval-split",
                "test",
                "--max-rows",
                "900",
                "--budgets",
                "60,120",
                "--teacher-accuracy",
                "0.8",
                "--teacher-latency-ms",
                "5",
                "--baseline-sample",
                "40",
                "--candidates",
                "logistic_regression,ridge",
                "--probe-rows",
                "5000",
                "--out",
                str(out),
                "--plot",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["rows"] == 900 and report["classes"] == 6 and report["embedder"].startswith("static-minilm256-")
    assert report["teacher"]["name"] == "simulated_hard"  # the default: a simulation erring on hard rows
    assert report["teacher"]["accuracy_vs_gold"] == pytest.approx(0.8, abs=0.002)
    base = report["baseline"]
    assert base["teacher_calls"] == 900 and "extrapolated from 40" in base["seconds_measured_or_extrapolated"]
    assert base["seconds"] >= 900 * 0.005 / 8  # at least the latency floor
    assert [r["budget"] for r in report["runs"]] == [60, 120]
    for run in report["runs"]:
        assert run["teacher_calls"] == run["budget"]
        assert run["seconds_total"] == pytest.approx(
            report["embed_seconds"] + run["seconds_teacher"] + run["seconds_train"] + run["seconds_predict"], abs=0.01
        )
        assert run["speedup_vs_baseline"] == pytest.approx(base["seconds"] / run["seconds_total"], rel=0.02)
        assert 0.3 < run["accuracy_vs_gold"] <= 1 and 0.3 < run["agreement_with_teacher"] <= 1
    assert report["inference_rows_per_second"] > 0 and report["peak_rss_mb"] > 0
    assert (tmp_path / "report_budget.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_bench_runs_two_teachers_side_by_side_on_the_same_budgets(tmp_path, capsys):
    out = tmp_path / "both.json"
    argv = ["bench", "--data", str(DEMO_CORPUS), "--label-column", "topic", "--max-rows", "600"]
    argv += ["--budgets", "60,120", "--teacher-accuracy", "0.8", "--teacher-latency-ms", "0", "--baseline-sample"]
    argv += ["20", "--candidates", "logistic_regression", "--probe-rows", "2000", "--out", str(out)]
    assert main([*argv, "--teacher", "simulated,simulated_hard"]) == 0
    both = json.loads(out.read_text())
    assert both["teachers"] == ["simulated", "simulated_hard"]
    assert [(r["teacher"], r["budget"]) for r in both["runs"]] == [
        ("simulated", 60),
        ("simulated", 120),
        ("simulated_hard", 60),
        ("simulated_hard", 120),
    ]
    for kind, path in both["reports"].items():
        assert json.loads(Path(path).read_text())["teacher"]["name"] == kind
    printed = capsys.readouterr().out
    assert "teacher_accuracy_vs_gold" in printed and "simulated_hard" in printed
    with pytest.raises(SystemExit):
        main([*argv, "--teacher", "simulated,oracle"])
    assert "unknown teacher 'oracle'" in capsys.readouterr().err


def test_bench_names_a_missing_column(tmp_path):
    with pytest.raises(SystemExit, match="column 'gold' not in"):
        main(["bench", "--data", str(DEMO_CORPUS), "--label-column", "gold", "--out", str(tmp_path / "r.json")])


def test_resampling_grows_the_corpus_with_distinct_texts_and_keeps_eval_rows_unseen(tmp_path):
    import pandas as pd

    from scalellm_dagster.cli.bench import resample

    df = pd.DataFrame(
        {"id": [10, 11, 12], "text": ["a", "b", "c"], "label": ["x", "y", "x"], "split": ["train", "train", "test"]}
    )
    big = resample(df, 1000, seed=0)
    assert len(big) == 1000 and big["id"].is_unique and big["text"].is_unique
    assert big.iloc[:3]["text"].tolist() == ["a", "b", "c"]  # every original once, unchanged
    origin = big["text"].str.split(" ").str[0]
    assert (big["label"] == origin.map({"a": "x", "b": "y", "c": "x"})).all()
    assert (big["split"] == origin.map({"a": "train", "b": "train", "c": "test"})).all()
    assert 250 < (big["split"] == "test").sum() < 420


def test_bench_at_a_resampled_scale_reports_the_source_rows(tmp_path):
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "bench",
                "--data",
                str(DEMO_CORPUS),
                "--label-column",
                "topic",
                "--max-rows",
                "500",
                "--resample-to",
                "3000",
                "--budgets",
                "60",
                "--teacher-latency-ms",
                "0",
                "--baseline-sample",
                "40",
                "--candidates",
                "ridge",
                "--dim",
                "32",
                "--probe-rows",
                "3000",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["rows"] == 3000 and report["resampled_from_rows"] == 500
    assert report["baseline"]["teacher_calls"] == 3000 and report["runs"][0]["teacher_calls"] == 60


def test_bench_takes_the_guaranteed_cascade_settings(tmp_path):
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "bench",
                "--data",
                str(DEMO_CORPUS),
                "--label-column",
                "topic",
                "--max-rows",
                "900",
                "--budgets",
                "150",
                "--teacher-latency-ms",
                "0",
                "--baseline-sample",
                "20",
                "--candidates",
                "logistic_regression",
                "--dim",
                "64",
                "--probe-rows",
                "2000",
                "--cascade-budget",
                "300",
                "--cascade-target",
                "0.9",
                "--cascade-delta",
                "0.05",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    [run] = json.loads(out.read_text())["runs"]
    assert run["cascade_delta"] == 0.05 and 0 < run["cascade_guaranteed_agreement"] <= 1
    assert 150 < run["teacher_calls"] <= 150 + 300
    if run["cascade_target_reached"]:
        assert run["cascade_guaranteed_agreement"] >= 0.9 and run["cascade_rows_needed"] is None
    else:  # said plainly: what the target would need
        assert run["cascade_rows_needed"] is None or run["cascade_rows_needed"] > 300


def test_bench_against_an_endpoint_keeps_to_the_teacher_rate_limit_setting(tmp_path, monkeypatch):
    """`scalellm bench --teacher openai` builds its teacher as the code location does, from the settings with its
    flags overlaid: SCALELLM_TEACHER_RPM paces it, and a server enforcing that limit (without rate-limit headers
    to adapt to) refuses nothing (issue #46: it used to build the teacher by hand, without the setting, and 15 of 45
    requests were refused here)."""
    import pandas as pd

    from tests.fake_openai import FakeOpenAI, Limits

    demo = pd.read_parquet(DEMO_CORPUS)
    gold = dict(zip(demo["text"], demo["topic"]))
    monkeypatch.setenv("SCALELLM_TEACHER_RPM", "300")
    monkeypatch.setenv("SCALELLM_DUCKDB_PATH", str(tmp_path / "wh.duckdb"))  # the pace folder goes beside it
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with FakeOpenAI(lambda text: gold.get(text, "cards"), limits=Limits(rpm=300, send_headers=False)) as server:
        out = tmp_path / "report.json"
        args = ["bench", "--data", str(DEMO_CORPUS), "--label-column", "topic", "--max-rows", "300"]
        args += ["--teacher", "openai", "--base-url", server.base_url, "--model", "fake", "--budgets", "100"]
        args += ["--teacher-batch-size", "10", "--teacher-concurrency", "8", "--baseline-sample", "20"]
        args += ["--candidates", "logistic_regression", "--probe-rows", "2000", "--out", str(out)]
        assert main(args) == 0
        sent = len(server.requests)
    assert sent >= 30  # 10 sample requests of 10 rows, 20 one-row baseline requests, re-asks if any
    assert server.refused == 0, f"{server.refused} of {sent} requests refused by the server's 300/min limit"
    assert json.loads(out.read_text())["runs"][0]["teacher_calls"] >= 100


def test_bench_builds_its_embedder_from_the_settings_with_its_flags_overlaid(monkeypatch):
    """The embedder `scalellm bench` uses is the code location's, built from the same settings: a setting the flags do
    not name (the model, the rows per request) reaches it; the flags' own (the kind) win."""
    import argparse

    from scalellm_dagster.cli.bench import bench_embedder

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SCALELLM_EMBEDDER", "static")
    monkeypatch.setenv("SCALELLM_EMBEDDING_MODEL", "my-embedding-model")
    monkeypatch.setenv("SCALELLM_EMBEDDING_BATCH_SIZE", "17")
    embedder = bench_embedder(argparse.Namespace(embedder="openai", dim=64, seed=0))
    assert (embedder.model, embedder.batch_size) == ("my-embedding-model", 17)
    assert "127.0.0.1:9" in embedder.endpoint


def test_bench_compares_the_synchronous_and_the_batch_modes_side_by_side(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from tests.fake_openai import FakeOpenAI

    demo = pd.read_parquet(DEMO_CORPUS)
    gold = dict(zip(demo["text"], demo["topic"]))
    monkeypatch.setenv("SCALELLM_DUCKDB_PATH", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("SCALELLM_BATCH_POLL_SECONDS", "0.05")
    with FakeOpenAI(lambda text: gold[text]) as server:
        out = tmp_path / "modes.json"
        args = ["bench", "--data", str(DEMO_CORPUS), "--label-column", "topic", "--max-rows", "400"]
        args += ["--teacher", "openai", "--base-url", server.base_url, "--model", "fake", "--budgets", "150"]
        args += ["--baseline-sample", "10", "--candidates", "logistic_regression", "--probe-rows", "2000"]
        assert main([*args, "--teacher-batch-size", "10", "--teacher-mode", "batch", "--out", str(out)]) == 0
        assert len(server.batches) == 1 and len(server.batch_lines) == 15  # the batch run's sample: one batch
    modes = json.loads(out.read_text())
    sync, batch = modes["runs"]
    assert (sync["teacher_mode"], batch["teacher_mode"]) == ("sync", "batch")
    assert sync["teacher_requests"] == batch["teacher_requests"] >= 15
    assert batch["teacher_cost_usd"] == pytest.approx(sync["teacher_cost_usd"] / 2, rel=1e-3)
    assert sync["accuracy_vs_gold"] == batch["accuracy_vs_gold"]  # the same answers, the same student
    assert "seconds_teacher_measured" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="needs --teacher openai"):
        main([*args[:7], "--teacher", "simulated", "--teacher-mode", "batch", "--out", str(out)])
