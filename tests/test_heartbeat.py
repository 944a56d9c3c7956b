"""Progress while a step works (issue #47): every asset and check step says what it is doing at least every few
seconds, so a run's log never hides a minute of work."""

from __future__ import annotations

import time

from dagster import DagsterInstance

from scalellm_dagster.assets import heartbeat_step
from scalellm_dagster.core.heartbeat import Heartbeat, phase
from tests.pipeline_helpers import run_pipeline


def test_a_heartbeat_says_what_the_step_is_doing_until_the_step_ends():
    lines: list[str] = []
    with Heartbeat(lines.append, "embeddings", every=0.05):
        time.sleep(0.18)
        phase("writing embeddings to the warehouse")
        time.sleep(0.18)
    ended = len(lines)
    time.sleep(0.15)
    assert len(lines) == ended  # nothing after the step
    assert any(line.startswith("embeddings: still working (") for line in lines)
    assert any(line.startswith("embeddings: still writing embeddings to the warehouse (") for line in lines)
    assert 4 <= ended <= 9
    phase("outside any step")  # a no-op, not an error


def test_every_step_of_a_run_beats_while_it_works(pipeline_env, monkeypatch):
    """With a beat every 20 ms, each step long enough to beat logs its own name and what it does: the corpus check
    names its Great Expectations validation, the sample step the simulated teacher's reading."""
    monkeypatch.setattr(heartbeat_step, "EVERY_SECONDS", 0.02)
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
        assert result.success
        logs = [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]
    beats = [line for line in logs if ": still " in line]
    assert any(line.startswith("corpus_rows_valid: still validating 400 rows against") for line in beats)
    assert any(line.startswith("labeled_sample: still ") for line in beats)
    steps = {line.split(":")[0] for line in beats}
    assert {"corpus", "embeddings", "student_candidates", "predictions"} <= steps, steps
