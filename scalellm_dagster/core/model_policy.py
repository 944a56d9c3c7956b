"""When a task's deployed model is replaced: the model (its sample, the candidates, the choice, the trained student)
changes only when something says so; predictions follow the data with the model as it is.

A model is replaced when there is none yet, when a user asks, when the task's definition changed since its sample
was drawn, when a drift top-up is due (failed audits), and, by the task's `retrain:` policy, when a cron tick has
passed since the draw or the corpus has grown by a stated share since then. Anything else keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from croniter import croniter


@dataclass(frozen=True)
class Drawn:
    """What the deployed model's sample was drawn from: when, from how many corpus rows, under which definition."""

    at: datetime
    corpus_rows: int
    definition: str
    run_id: str = ""  # the run that drew it: what the candidates, the choice and the model version are keyed on
    embedding_version: str | None = None  # the vectors the model was trained on
    budget: int | None = None  # the budget drawn: a task that follows the report's advice redraws when it moves


@dataclass(frozen=True)
class Decision:
    replace: bool
    reason: str


def decide(
    drawn: Drawn | None,
    *,
    definition: str,
    corpus_rows: int,
    now: datetime,
    cron: str | None = None,
    growth: float | None = None,
    drift_due: bool = False,
    requested: bool = False,
    embedding_versions: set[str] | None = None,
    budget: tuple[int, str] | None = None,
) -> Decision:
    """Replace the deployed model or keep it; the reason names the rule that decided (the first that applies)."""
    if drawn is None:
        return Decision(True, "no deployed model yet")
    if requested:
        return Decision(True, "replacement requested (scalellm run --retrain, or the retrain_models job)")
    if drawn.definition != definition:
        return Decision(True, f"the task's definition changed (fingerprint {drawn.definition} -> {definition})")
    if drift_due:
        return Decision(True, "a drift top-up is due (failed audits in a row)")
    if budget is not None and drawn.budget is not None and budget[0] != drawn.budget:
        return Decision(True, f"the budget to draw changed ({drawn.budget:,} -> {budget[0]:,}: {budget[1]})")
    if embedding_versions is not None and drawn.embedding_version not in (*embedding_versions, None):
        # a student trained on other vectors cannot read these
        return Decision(
            True,
            f"the embeddings were made again by another embedder version since the draw ({drawn.embedding_version} "
            f"-> {', '.join(sorted(embedding_versions))})",
        )
    grown = corpus_rows / max(drawn.corpus_rows, 1) - 1
    if growth is not None and grown >= growth:
        return Decision(
            True,
            f"the corpus grew by {grown:.1%} since the sample was drawn ({drawn.corpus_rows:,} -> {corpus_rows:,} "
            f"rows; policy: retrain at {growth:.0%})",
        )
    if cron is not None:
        tick = next_tick(cron, drawn.at)
        if tick <= now:
            return Decision(True, f"the retrain schedule '{cron}' ticked at {tick:%Y-%m-%d %H:%M} since the draw")
    return Decision(False, kept_reason(drawn, corpus_rows, cron, growth))


def next_tick(cron: str, after: datetime) -> datetime:
    return croniter(cron, after).get_next(datetime)


def kept_reason(drawn: Drawn, corpus_rows: int, cron: str | None, growth: float | None) -> str:
    grown = corpus_rows / max(drawn.corpus_rows, 1) - 1
    parts = [
        "definition unchanged",
        "no drift top-up due",
        f"corpus {grown:+.1%} since the draw" + (f" (retrain at +{growth:.0%})" if growth is not None else ""),
    ]
    if cron is not None:
        parts.append(f"next scheduled retrain {next_tick(cron, drawn.at):%Y-%m-%d %H:%M}")
    return "kept: " + ", ".join(parts)
