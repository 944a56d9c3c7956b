"""The teacher kinds: one line each, from the `SCALELLM_TEACHER` value to what builds it and the facts the rest of
the code asks about it. A new backend is a module with a `Teacher` and a `register` line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scalellm_dagster.kind_registry import KindRegistry
from scalellm_dagster.teachers.base import Teacher, TeacherNotConfigured


@dataclass(frozen=True)
class TeacherKind:
    """`build(options, task, corpus, embeddings)` makes the teacher for a task from the resource's fields; `corpus`
    and `embeddings` (a row-aligned matrix, or a callable streaming (ids, vectors) blocks) feed a simulation only.
    `simulated`: it answers from gold labels, not an LLM (runs and reports say so). `priced`: requests are billed
    per token (False: compute on this machine). `one_at_a_time`: it answers one request at a time whatever the
    concurrency setting. `badge`: the kind Dagster's UI shows on the assets that ask it. `missing(options)` says
    why it cannot run here (an optional extra or a model file missing), checked at start-up, or None.
    `reads_vectors()`: the embedder version of the only vectors a simulation can use (None: any)."""

    name: str
    summary: str
    build: Callable[[Any, Any, Any, Any], Teacher]
    badge: str
    simulated: bool = False
    priced: bool = True
    one_at_a_time: bool = False
    missing: Callable[[Any], str | None] = lambda options: None
    reads_vectors: Callable[[], str] | None = None


TEACHERS = KindRegistry("SCALELLM_TEACHER")
teacher_kind = TEACHERS.get_kind


def _prices(options) -> dict:
    return {"price_in_per_mtok": options.price_in_per_mtok, "price_out_per_mtok": options.price_out_per_mtok}


def _openai(options, task, corpus, embeddings) -> Teacher:
    from scalellm_dagster.openai_client import make_client
    from scalellm_dagster.rate_limit import shared_limiter
    from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher

    client = make_client(options.base_url, options.api_key, options.timeout_seconds, options.max_retries)
    endpoint = options.base_url or "https://api.openai.com/v1"
    limiter = shared_limiter(
        endpoint, options.requests_per_minute, options.tokens_per_minute, options.concurrency, options.pace_dir
    )
    return OpenAIChatTeacher(task, client, options.model, endpoint=endpoint, limiter=limiter, **_prices(options))


def _local(options, task, corpus, embeddings) -> Teacher:
    from scalellm_dagster.teachers.local import local_teacher

    return local_teacher(task, options.local_model, options.local_threads)


def _local_missing(options) -> str | None:
    from scalellm_dagster.teachers.local import LocalModelError, model_path

    try:  # the file is checked, not loaded: cheap enough for start-up
        model_path(options.local_model)
    except LocalModelError as exc:
        return str(exc)
    return None


def _gold_column(task, corpus):
    """The simulations answer from the task's gold column: say which setting to change when there is none."""
    if not task.gold_column:
        raise TeacherNotConfigured(
            f"task {task.name!r} has no gold_column, and the only teacher configured is the offline "
            "simulation, which answers from gold labels. Either set SCALELLM_TEACHER=openai with "
            "OPENAI_BASE_URL (and OPENAI_API_KEY, SCALELLM_TEACHER_MODEL) to use a real LLM, or add "
            "gold_column to the task."
        )
    if task.gold_column not in corpus.columns:
        raise TeacherNotConfigured(
            f"task {task.name!r}: gold_column {task.gold_column!r} is not a corpus column "
            f"(columns: {list(corpus.columns)})"
        )
    return corpus[task.gold_column]


def _simulated(options, task, corpus, embeddings) -> Teacher:
    from scalellm_dagster.teachers.simulated import SimulatedTeacher

    return SimulatedTeacher.from_corpus(
        task,
        corpus["id"],
        _gold_column(task, corpus),
        embeddings,
        accuracy=options.simulated_accuracy,
        latency_ms=options.simulated_latency_ms,
        seed=options.seed,
        bias=options.simulated_bias,
        **_prices(options),
    )


def _static_reader() -> str:
    from scalellm_dagster.teachers.simulated_hard import static_reader

    return static_reader()


def _simulated_hard(options, task, corpus, embeddings) -> Teacher:
    """`embeddings`, when given, are the static embedder's vectors of the rows (see `static_reader`)."""
    from scalellm_dagster.teachers.simulated_hard import HardRowsTeacher, matrix_blocks

    stored = embeddings if embeddings is None or callable(embeddings) else matrix_blocks(corpus["id"], embeddings)
    return HardRowsTeacher.from_texts(
        task,
        corpus["id"],
        corpus["text"],
        _gold_column(task, corpus),
        accuracy=options.simulated_accuracy,
        seed=options.seed,
        lean=options.simulated_bias,
        latency_ms=options.simulated_latency_ms,
        stored=stored,
        **_prices(options),
    )


TEACHERS.register(
    TeacherKind("simulated", "offline, errors uniform over rows", _simulated, badge="python", simulated=True)
)
TEACHERS.register(
    TeacherKind(
        "simulated_hard",
        "offline, errors on the rows a model finds hard",
        _simulated_hard,
        badge="python",
        simulated=True,
        reads_vectors=_static_reader,
    )
)
TEACHERS.register(TeacherKind("openai", "any OpenAI-compatible endpoint", _openai, badge="openai"))
TEACHERS.register(
    TeacherKind(
        "local",
        "a GGUF model in-process, llm extra",
        _local,
        badge="llama",
        priced=False,
        one_at_a_time=True,
        missing=_local_missing,
    )
)
