"""`scalellm probe-batch`: the same rows at several rows per request, against the one-row answers."""

from __future__ import annotations

import json

from scalellm_dagster.cli.batch_probe import largest_within, probe_batch_sizes
from tests.fake_openai import FakeOpenAI
from tests.test_openai_teacher import ROWS, rule, teacher_for


class CrowdedFake(FakeOpenAI):
    """A teacher that answers worse beside more than 5 other rows: it says 'neg' for every row then."""

    def _chat(self, body, fault):
        reply = super()._chat(body, fault)
        content = json.loads(reply["choices"][0]["message"]["content"])
        if len(content["answers"]) > 5:
            content["answers"] = [{**a, "label": "neg"} for a in content["answers"]]
        reply["choices"][0]["message"]["content"] = json.dumps(content)
        return reply


def test_agreement_drops_where_the_teacher_answers_worse_and_the_advice_stops_before():
    with CrowdedFake(rule) as server:
        table = probe_batch_sizes(teacher_for(server), ROWS, [5, 10, 20], concurrency=2, gold=ROWS["text"].map(rule))
    by_size = table.set_index("rows_per_request")
    assert list(by_size.index) == [1, 5, 10, 20]
    assert by_size.loc[5, "agreement_with_1_row"] == 1.0 and by_size.loc[20, "agreement_with_1_row"] < 0.8
    assert list(by_size["requests"]) == [40, 8, 4, 2]
    # the prompt's fixed part is paid once per request: more rows per request, fewer prompt tokens per row
    assert by_size.loc[20, "prompt_tokens_per_row"] < by_size.loc[1, "prompt_tokens_per_row"]
    assert by_size.loc[1, "accuracy_vs_gold"] == 1.0
    assert largest_within(table, 0.02) == 5


def test_probe_batch_command_prints_the_table_and_the_advice(pipeline_env, capsys, monkeypatch):
    from scalellm_dagster.cli import main
    from tests.conftest import demo_slice

    gold = dict(zip(demo_slice(400)["text"], demo_slice(400)["topic"]))
    with FakeOpenAI(lambda t: gold[t]) as server:
        monkeypatch.setenv("SCALELLM_TEACHER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        assert main(["probe-batch", "--rows", "20", "--sizes", "5,10"]) == 0
    out = capsys.readouterr().out
    assert "rows_per_request" in out and "agreement_with_1_row" in out and "accuracy_vs_gold" in out
    assert "largest batch within 2% agreement loss: 10 rows per request" in out
