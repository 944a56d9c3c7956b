"""Labelling a sample: answers from the cache first, the rest asked in batches with bounded concurrency.

Answers are handed to `store` as they arrive, in groups (every `flush_rows` answers or `flush_seconds`, and
always before returning or raising), so a failed request or a rerun never pays twice for a row already answered.
With a `journal` (the warehouse's), each request's answers are also appended to it and fsynced before the next
request is sent: a killed process loses only the requests in flight, and the next run stores what the journal
holds. Grouping the warehouse writes matters: one costs tens of milliseconds, more than a fast request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import pandas as pd

from scalellm_dagster.core.text_hash import text_hash
from scalellm_dagster.teachers.base import Answer, Teacher, TeacherError, TeacherFatalError
from scalellm_dagster.teachers.batch_api import BatchReport, BatchRound, BatchUnsupported

# A run goes on past failed requests (their rows stay unanswered, asked again next run) while they are at most
# this share of its requests; past it, the endpoint is taken to be down and the step fails.
MAX_FAILED_SHARE = 0.2

# lookup(text_hashes) -> {text_hash: Answer}; store(answer rows, ledger rows) persists both together.
Lookup = Callable[[list[str]], dict[str, Answer]]
Store = Callable[[list[dict], list[dict]], None]


class _StoreBuffer:
    """Answers on their way to `store`: journaled at once when there is a journal (durable before the next
    request is sent), stored in groups."""

    def __init__(self, store: Store, flush_rows: int, flush_seconds: float, journal=None):
        self.store, self.flush_rows, self.flush_seconds, self.journal = store, flush_rows, flush_seconds, journal
        self.answers: list[dict] = []
        self.ledger: list[dict] = []
        self.last = time.monotonic()

    def add(self, answers: list[dict], ledger: dict) -> None:
        if self.journal is not None:
            self.journal.append(answers, [ledger])
        self.answers.extend(answers)
        self.ledger.append(ledger)
        if len(self.answers) >= self.flush_rows or time.monotonic() - self.last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.ledger:
            self.store(self.answers, self.ledger)
            self.answers, self.ledger = [], []
            if self.journal is not None:
                self.journal.clear()
        self.last = time.monotonic()


@dataclass
class LabelingStats:
    rows: int = 0
    unique_texts: int = 0
    cache_hits: int = 0
    asked: int = 0
    requests: int = 0
    unanswered: int = 0
    failed_requests: int = 0
    normalised: int = 0
    response_formats: set = field(default_factory=set)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    request_seconds: float = 0.0
    wall_seconds: float = 0.0
    tokens_estimated: bool = False
    notes: list[str] = field(default_factory=list)
    batch: BatchReport | None = None  # what the Batch API did, when it was used

    def add(self, other: LabelingStats) -> None:
        """Accumulate another call's figures (a sample asked in several rounds)."""
        for name in (
            "rows",
            "unique_texts",
            "cache_hits",
            "asked",
            "requests",
            "unanswered",
            "failed_requests",
            "normalised",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "request_seconds",
            "wall_seconds",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.response_formats |= other.response_formats
        self.tokens_estimated |= other.tokens_estimated
        self.notes.extend(n for n in other.notes if n not in self.notes)
        if other.batch is not None:
            self.batch = self.batch or BatchReport()
            self.batch.add(other.batch)


def label_with_cache(
    teacher: Teacher,
    rows: pd.DataFrame,
    lookup: Lookup,
    store: Store,
    batch_size: int = 10,
    concurrency: int = 4,
    *,
    max_rounds: int = 2,
    log: Callable[[str], None] = lambda _msg: None,
    flush_rows: int = 200,
    flush_seconds: float = 1.0,
    max_failed_share: float = MAX_FAILED_SHARE,
    journal=None,
    batch: BatchRound | None = None,
) -> tuple[pd.DataFrame, LabelingStats]:
    """Answers for `rows` (`id`, `text`), in their order: id, teacher_label, raw_answer, valid, from_cache.

    Rows a request left out of its answer are asked again in a further round (up to `max_rounds`). A request that
    fails (after the teacher's retries) leaves its rows unanswered and the round goes on, unless more than
    `max_failed_share` of the round's requests fail: then it stops and raises `TeacherError`, saying what was
    kept. A `TeacherFatalError` (a refused key, say) stops at once. Unanswered rows come back with valid=False
    and raw_answer=None and are not cached, so a rerun asks for them.

    With `batch` (the Batch API), the open batches of this teacher and prompt are resumed first; then a first
    round of at least `batch.options.min_rows` rows goes as batches, at the batch price, and so do the further
    rounds when `batch.options.reask` is `batch`; other rounds are synchronous.
    """
    started = time.perf_counter()
    stats = LabelingStats(rows=len(rows))
    hashes = rows["text"].map(text_hash)
    first = rows.assign(text_hash=hashes).drop_duplicates("text_hash")
    stats.unique_texts = len(first)
    known = lookup(first["text_hash"].tolist())
    cached = set(known)
    stats.cache_hits = len(cached)
    pending = [(str(r.id), r.text, r.text_hash) for r in first.itertuples() if r.text_hash not in known]
    stats.asked = len(pending)
    log(
        f"teacher {teacher.provider}/{teacher.model}: {len(rows):,} rows, {stats.cache_hits:,} answered from "
        f"cache, {len(pending):,} to ask in batches of {batch_size} with concurrency {concurrency}"
    )

    buffer = _StoreBuffer(store, flush_rows, flush_seconds, journal)
    via_batch = False
    try:
        if batch is not None:
            stats.batch = batch.report = BatchReport()  # this call's batches: a session adds up its calls' reports
            pending = _resume_batches(teacher, batch, pending, known, buffer, stats)
            via_batch = len(pending) >= batch.options.min_rows
            if pending and not via_batch:
                log(f"{len(pending):,} rows to ask, fewer than SCALELLM_BATCH_MIN_ROWS: asked synchronously")
        for round_no in range(1, max_rounds + 1):
            if not pending:
                break
            if via_batch and (round_no == 1 or batch.options.reask == "batch"):
                try:
                    missing = batch.ask(pending, batch_size, _keeper(teacher, batch, known, buffer, stats))
                    if missing:
                        log(f"round {round_no}: {len(missing):,} rows got no answer from the batch; asking again")
                    pending = missing
                    continue
                except BatchUnsupported as exc:
                    if batch.options.fallback != "sync":
                        raise
                    via_batch, batch.report.fell_back = False, str(exc).split(":")[0]
                    log(f"{exc}; SCALELLM_BATCH_FALLBACK=sync: asking synchronously")
            batches = [pending[i : i + batch_size] for i in range(0, len(pending), batch_size)]
            missing = _run_round(
                teacher,
                batches,
                known,
                buffer,
                concurrency,
                stats,
                log=log,
                round_no=round_no,
                started=started,
                max_failed_share=max_failed_share,
            )
            if missing:
                log(f"round {round_no}: {len(missing):,} rows were missing from the teacher's answers; asking again")
            pending = missing
    finally:
        buffer.flush()
    stats.unanswered = int((~first["text_hash"].isin(list(known))).sum())  # left out, or their request failed
    stats.wall_seconds = time.perf_counter() - started

    answers = [known.get(h) for h in hashes]
    out = pd.DataFrame(
        {
            "id": rows["id"].to_numpy(),
            "teacher_label": [a.label if a else None for a in answers],
            "raw_answer": [a.raw if a else None for a in answers],
            "valid": [bool(a and a.valid) for a in answers],
        }
    )
    out["from_cache"] = hashes.isin(cached).to_numpy()
    return out, stats


def _run_round(
    teacher,
    batches,
    known,
    buffer: _StoreBuffer,
    concurrency,
    stats,
    *,
    log,
    round_no,
    started,
    max_failed_share: float,
) -> list:
    missing: list = []
    errors: list[str] = []
    fatal: TeacherFatalError | None = None
    allowed = int(max_failed_share * len(batches))
    answered_now = 0
    done_rows = 0
    total_rows = sum(len(b) for b in batches)
    next_log = 0.0
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        queue = iter(batches)
        running = {}
        for batch in _take(queue, concurrency):
            running[pool.submit(teacher.label_batch, [(k, t) for k, t, _ in batch])] = batch
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                batch = running.pop(future)
                try:
                    result = future.result()
                except TeacherFatalError as exc:
                    fatal = fatal or exc
                    continue
                except Exception as exc:  # noqa: BLE001 - its rows stay unanswered; reported with what was saved
                    errors.append(f"{type(exc).__name__}: {exc}")
                    stats.failed_requests += 1
                    log(f"teacher request failed, its {len(batch)} rows left for the next run: {errors[-1]}")
                    continue
                answered_count, unanswered = _keep_answers(teacher, result, batch, known, buffer, stats)
                answered_now += answered_count
                missing.extend(unanswered)
                done_rows += len(batch)
                if done_rows / total_rows >= next_log or done_rows == total_rows:
                    elapsed = time.perf_counter() - started
                    log(
                        f"teacher round {round_no}: {done_rows:,}/{total_rows:,} rows "
                        f"({done_rows / max(elapsed, 1e-9):,.0f} rows/s)"
                    )
                    next_log += 0.1
            if fatal or len(errors) > allowed:
                continue  # stop feeding new requests; the ones in flight finish and their answers are kept
            for batch in _take(queue, len(finished)):
                running[pool.submit(teacher.label_batch, [(k, t) for k, t, _ in batch])] = batch
    kept = (
        f"{answered_now:,} answers from this round are cached; a rerun asks only the "
        f"{total_rows - answered_now:,} other rows"
    )
    if fatal:
        raise TeacherFatalError(f"{fatal} ({kept})") from fatal
    if len(errors) > allowed:
        raise TeacherError(
            f"{len(errors)} of {len(batches):,} teacher requests failed, more than the {max_failed_share:.0%} a "
            f"run tolerates (first: {errors[0]}); {kept}"
        )
    return missing


def _resume_batches(teacher, batch: BatchRound, pending: list, known: dict, buffer, stats) -> list:
    """The rows of `pending` still to ask once the open batches have ended and their answers are kept."""
    batch.resume(_keeper(teacher, batch, known, buffer, stats))
    return [p for p in pending if p[2] not in known]


def _keeper(teacher, batch: BatchRound, known: dict, buffer, stats):
    """Keeps a batch line's answers as a synchronous request's, at the batch price, booked to its batch."""

    def keep(result, rows, batch_id, line_id):
        _keep_answers(
            teacher,
            result,
            rows,
            known,
            buffer,
            stats,
            price_factor=batch.options.price_factor,
            batch_id=batch_id,
            request_id=f"{batch_id}/{line_id}",
        )

    return keep


def _keep_answers(
    teacher,
    result,
    batch,
    known: dict,
    buffer: _StoreBuffer,
    stats,
    *,
    price_factor: float = 1.0,
    batch_id: str | None = None,
    request_id: str | None = None,
) -> tuple[int, list]:
    """One request's answers into `known` and the store buffer, with its ledger row and its share of `stats`;
    returns (rows answered, the batch's rows left unanswered, to ask again). A Batch API line is billed at
    `price_factor` of the synchronous price and names its `batch_id` in the ledger; its `request_id` (the batch
    and the line) books it once, however often a batch is read again (a run killed while storing its output)."""
    answered, unanswered = [], []
    for key, text, h in batch:
        answer = result.answers.get(key)
        if answer is None:
            unanswered.append((key, text, h))
            continue
        known[h] = answer
        stats.normalised += answer.normalised
        answered.append({"text_hash": h, "label": answer.label, "raw_answer": answer.raw})
    cost = teacher.cost_usd(result.prompt_tokens, result.completion_tokens) * price_factor
    line = ledger_line(request_id or uuid.uuid4().hex, result, cost, len(batch), len(answered))
    buffer.add(answered, {**line, "batch_id": batch_id} if batch_id else line)
    if result.response_format:
        stats.response_formats.add(result.response_format)
    stats.requests += 1
    stats.prompt_tokens += result.prompt_tokens
    stats.completion_tokens += result.completion_tokens
    stats.cost_usd += cost
    stats.request_seconds += result.seconds
    stats.tokens_estimated |= result.tokens_estimated
    stats.notes.extend(n for n in result.notes if n not in stats.notes)
    return len(answered), unanswered


def _take(iterator, n):
    for _ in range(n):
        try:
            yield next(iterator)
        except StopIteration:
            return


def ledger_line(
    request_id: str, result, cost: float, rows_asked: int, rows_answered: int, part: int = 0, *, parts: int = 1
) -> dict:
    """One request's line in the teacher ledger. A request several tasks share (`parts` of them) is booked to
    each as part `part`: its tokens, cost and time split evenly, so the tasks' ledgers add up to what was paid."""
    return {
        "request_id": request_id,
        "rows_asked": rows_asked,
        "rows_answered": rows_answered,
        "prompt_tokens": _share(result.prompt_tokens, parts, part),
        "completion_tokens": _share(result.completion_tokens, parts, part),
        "cost_usd": cost / parts,
        "seconds": result.seconds / parts,
        "tokens_estimated": result.tokens_estimated,
        "response_format": result.response_format,
    }


def _share(total: int, parts: int, i: int) -> int:
    """Part `i` of `total` split into `parts` whole shares; the first takes the remainder, so they add up."""
    return total // parts + (total % parts if i == 0 else 0)
