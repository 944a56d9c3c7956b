"""The OpenAI-compatible Batch API: the requests the synchronous path sends, as JSONL files, at the batch price.

OpenAI, Azure OpenAI, Together and others take a JSONL file of chat requests (`/v1/files`, purpose `batch`), answer
it within 24 h (`/v1/batches`) and bill it at half the synchronous price. Nobody waits for a sample's labels, so it
is the teacher's natural channel once there are enough rows to ask.

Never paid twice: each file is recorded (`BatchRegistry`, the warehouse's table) with the rows it covers as soon as
it is uploaded, and the batch made from it as soon as it is created; a batch created by a run killed before it
could record it is found again by its input file. A run resumes every open batch of its teacher and prompt before
submitting anything, so rows already submitted are never submitted again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import openai

from scalellm_dagster.teachers.base import BatchResult, TeacherError, TeacherFatalError

TERMINAL = ("completed", "expired", "failed", "cancelled")
PROGRESS_EVERY_SECONDS = 600  # a batch whose status and count do not move is logged again this often
MAX_REQUESTS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 190 * 1024 * 1024  # the providers' limit is 200 MB; a margin for the multipart envelope

# (the teacher's result for one request, its rows as (key, None, text_hash), the batch id, the line's custom id)
Keep = Callable[[BatchResult, list, str, str], None]


@dataclass(frozen=True)
class BatchOptions:
    """How the Batch API is used. `min_rows`: fewer rows to ask go synchronously (a batch's fixed wait is not worth
    it). `reask`: how rows without a valid answer are asked again in the next round (`batch` or `sync`).
    `fallback`: an endpoint without a Batch API stops the step with one line (`error`) or is asked synchronously
    (`sync`). `wait_seconds`: how long a step waits for its batches; past it the step ends, the batches stay
    recorded, and the next run resumes them."""

    price_factor: float = 0.5
    min_rows: int = 100
    poll_seconds: float = 30.0
    wait_seconds: float = 3600.0
    reask: str = "batch"
    fallback: str = "error"
    completion_window: str = "24h"
    max_requests_per_file: int = MAX_REQUESTS_PER_FILE
    max_bytes_per_file: int = MAX_BYTES_PER_FILE


class BatchRegistry(Protocol):
    """Where the files and batches of one (provider, model, prompt version) are recorded, durably, at once."""

    def open_files(self) -> list[dict]:
        """Files not yet closed: {"file_id", "batch_id" (None until created), "requests": {custom_id: [[key,
        text_hash], ...]}}, oldest first."""
        ...

    def record_file(self, file_id: str, requests: dict[str, list]) -> None: ...

    def record_batch(self, file_id: str, batch_id: str) -> None: ...

    def close(self, file_id: str, status: str, note: str) -> None: ...


class MemoryBatchRegistry:
    """The in-process registry (the benchmark's): records live as long as the object."""

    def __init__(self):
        self.files: dict[str, dict] = {}

    def open_files(self) -> list[dict]:
        return [dict(f) for f in self.files.values() if f["status"] is None]

    def record_file(self, file_id: str, requests: dict[str, list]) -> None:
        self.files[file_id] = {"file_id": file_id, "batch_id": None, "requests": requests, "status": None}

    def record_batch(self, file_id: str, batch_id: str) -> None:
        self.files[file_id]["batch_id"] = batch_id

    def close(self, file_id: str, status: str, note: str) -> None:
        self.files[file_id].update(status=status, note=note)


class BatchPending(TeacherError):
    """The step's wait ran out with batches still running. They are recorded; the next run resumes them."""


class BatchCancelled(TeacherError):
    """A batch was cancelled (by `scalellm batch cancel` or at the provider): the step stops, keeping what it
    answered; the next run asks the other rows again."""


class BatchUnsupported(TeacherFatalError):
    """The endpoint has no Batch API."""


@dataclass
class BatchReport:
    """What the batches of one step did, for the log, the step's metadata and the ledger."""

    batch_ids: list[str] = field(default_factory=list)
    submitted_requests: int = 0
    resumed: int = 0
    endings: dict[str, int] = field(default_factory=dict)  # batch status -> batches
    failed_lines: int = 0  # request lines the provider answered with an error, or never answered
    invalid_lines: int = 0  # lines whose body is not a chat completion with an answer
    wait_seconds: float = 0.0
    fell_back: str | None = None

    def add(self, other: BatchReport) -> None:
        self.batch_ids += [b for b in other.batch_ids if b not in self.batch_ids]
        for name in ("submitted_requests", "resumed", "failed_lines", "invalid_lines", "wait_seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for status, n in other.endings.items():
            self.endings[status] = self.endings.get(status, 0) + n
        self.fell_back = self.fell_back or other.fell_back


class BatchClient:
    """The provider's files and batches through the `openai` client's own `files` and `batches` calls."""

    def __init__(self, client: openai.OpenAI, endpoint: str):
        self.client, self.endpoint = client, endpoint
        self.once = client.with_options(max_retries=0)  # a create retried blindly could submit twice

    def upload(self, data: bytes, name: str) -> str:
        try:
            return self.client.files.create(file=(name, data, "application/jsonl"), purpose="batch").id
        except (openai.NotFoundError, openai.BadRequestError) as exc:
            raise BatchUnsupported(
                f"teacher endpoint {self.endpoint} has no Batch API (POST /files answered HTTP {exc.status_code}): "
                "set SCALELLM_TEACHER_MODE=sync, or SCALELLM_BATCH_FALLBACK=sync to ask such endpoints synchronously"
            ) from exc

    def submit(self, file_id: str, window: str, metadata: dict, *, look_first: bool = False) -> str:
        """A new batch of `file_id`. `look_first` (a file a killed run uploaded): the batch already made from it, if
        the run died after creating it and before recording it. A create whose reply was lost is looked for too."""
        found = self.find(file_id) if look_first else None
        if found:
            return found
        try:
            return self.once.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window=window, metadata=metadata
            ).id
        except (openai.APIConnectionError, openai.InternalServerError):
            found = self.find(file_id)  # it may have been created before the connection dropped
            if found:
                return found
            raise

    def find(self, file_id: str) -> str | None:
        """The batch made from `file_id` among the latest 100 (ours is recent: the list is newest first)."""
        for batch in self.client.batches.list(limit=100).data:
            if batch.input_file_id == file_id:
                return batch.id
        return None

    def retrieve(self, batch_id: str):
        return self.client.batches.retrieve(batch_id)

    def lines(self, file_id: str | None) -> list[dict]:
        if not file_id:
            return []
        text = self.client.files.content(file_id).text
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a cut line answers nothing: its rows are asked again
        return out

    def cancel(self, batch_id: str):
        return self.client.batches.cancel(batch_id)


def custom_id(keys: list[str], index: int) -> str:
    """Names the request's rows; long lists are named by their ends (the registry holds every row)."""
    named = "rows:" + ",".join(keys)
    return named if len(named) <= 200 else f"rows:{keys[0]}..{keys[-1]}#{index}"


def jsonl_files(teacher, pending: list, batch_size: int, options: BatchOptions) -> list[tuple[bytes, dict]]:
    """(JSONL bytes, {custom_id: [[key, text_hash], ...]}) per file, each within the provider's limits."""
    files: list[tuple[bytes, dict]] = []
    lines: list[bytes] = []
    requests: dict[str, list] = {}
    size = 0
    for i in range(0, len(pending), batch_size):
        chunk = pending[i : i + batch_size]
        cid = custom_id([k for k, _, _ in chunk], i // batch_size)
        body = teacher.request_body([(k, t) for k, t, _ in chunk])
        line = (
            json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n"
        ).encode()
        if lines and (len(lines) >= options.max_requests_per_file or size + len(line) > options.max_bytes_per_file):
            files.append((b"".join(lines), requests))
            lines, requests, size = [], {}, 0
        lines.append(line)
        requests[cid] = [[k, h] for k, _, h in chunk]
        size += len(line)
    if lines:
        files.append((b"".join(lines), requests))
    return files


class BatchRound:
    """One step's use of the Batch API for one teacher, cache key and registry."""

    def __init__(
        self,
        teacher,
        client: BatchClient,
        registry: BatchRegistry,
        options: BatchOptions,
        *,
        log: Callable[[str], None] = lambda _msg: None,
        metadata: dict | None = None,
    ):
        self.teacher, self.client, self.registry, self.options = teacher, client, registry, options
        self.log = log
        self.metadata = {k: str(v)[:512] for k, v in (metadata or {}).items()}
        self.report = BatchReport()

    def resume(self, keep: Keep) -> set[str]:
        """Wait for every open batch of this teacher and prompt and keep their answers; returns the text hashes
        answered (the caller asks the others again)."""
        open_files = self.registry.open_files()
        if not open_files:
            return set()
        self.log(
            f"teacher batches: resuming {len(open_files)} batch file(s) a previous run submitted "
            f"({sum(len(f['requests']) for f in open_files):,} requests); nothing is submitted twice"
        )
        self.report.resumed += len(open_files)
        for f in open_files:
            if not f["batch_id"]:  # uploaded, then killed before the batch was made or recorded
                f["batch_id"] = self.client.submit(
                    f["file_id"], self.options.completion_window, self.metadata, look_first=True
                )
                self.registry.record_batch(f["file_id"], f["batch_id"])
        return self._wait_and_keep(open_files, keep)

    def ask(self, pending: list, batch_size: int, keep: Keep) -> list:
        """Submit `pending` ((key, text, text_hash) rows), wait, keep the answers; returns the rows left without
        an answer (a failed or missing line, a body that is no answer, an expired batch's rest)."""
        submitted = []
        for n, (data, requests) in enumerate(jsonl_files(self.teacher, pending, batch_size, self.options)):
            file_id = self.client.upload(data, f"scalellm-{int(time.time())}-{n}.jsonl")
            self.registry.record_file(file_id, requests)  # before anything else: a killed run finds it
            batch_id = self.client.submit(file_id, self.options.completion_window, self.metadata)
            self.registry.record_batch(file_id, batch_id)
            submitted.append({"file_id": file_id, "batch_id": batch_id, "requests": requests})
            self.report.submitted_requests += len(requests)
            self.log(
                f"teacher batch {batch_id}: submitted {len(requests):,} requests "
                f"({sum(len(r) for r in requests.values()):,} rows, {len(data) / 1e6:,.1f} MB)"
            )
        answered = self._wait_and_keep(submitted, keep)
        return [(k, t, h) for k, t, h in pending if h not in answered]

    def _wait_and_keep(self, files: list[dict], keep: Keep) -> set[str]:
        """Poll until every batch has ended (or the wait runs out: `BatchPending`), keeping each one's answers as
        it ends; returns the text hashes answered."""
        started = time.monotonic()
        waiting = {f["batch_id"]: f for f in files}
        answered: set[str] = set()
        self.report.batch_ids += [b for b in waiting if b not in self.report.batch_ids]
        cancelled = []
        shown: dict[str, tuple] = {}  # what each batch's last progress line said, and when
        try:
            while waiting:
                for batch_id in list(waiting):
                    batch = self.client.retrieve(batch_id)
                    self._progress(batch, waiting[batch_id], shown, started)
                    if batch.status in TERMINAL:
                        answered |= self._keep_batch(batch, waiting.pop(batch_id), keep, time.monotonic() - started)
                        cancelled += [batch_id] if batch.status == "cancelled" else []
                if waiting and time.monotonic() - started >= self.options.wait_seconds:
                    raise BatchPending(
                        f"teacher batch(es) {', '.join(waiting)} still running after "
                        f"{self.options.wait_seconds:,.0f} s (SCALELLM_BATCH_WAIT_SECONDS); they are recorded in the "
                        "warehouse, and the next run resumes them without submitting anything again (`scalellm "
                        "batch list` shows them)"
                    )
                if waiting:
                    time.sleep(self.options.poll_seconds)
        finally:
            self.report.wait_seconds += time.monotonic() - started
        if cancelled:
            raise BatchCancelled(
                f"teacher batch(es) {', '.join(cancelled)} cancelled; their answers so far are kept, the next run "
                "asks the other rows again"
            )
        return answered

    def _progress(self, batch, f: dict, shown: dict, started: float) -> None:
        """Logs a batch's status and requests done when either moved, or every PROGRESS_EVERY_SECONDS."""
        counts = batch.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        total = counts.total if counts else len(f["requests"])
        said, at = shown.get(batch.id, (None, 0.0))
        if (batch.status, done) != said or time.monotonic() - at >= PROGRESS_EVERY_SECONDS:
            self.log(
                f"teacher batch {batch.id}: {batch.status}, {done:,}/{total:,} requests done, "
                f"{time.monotonic() - started:,.0f} s waited"
            )
            shown[batch.id] = ((batch.status, done), time.monotonic())

    def _keep_batch(self, batch, f: dict, keep: Keep, waited: float) -> set[str]:
        """Keeps the answers of an ended batch; each line is booked its share of the time the batch was waited
        for, so the ledger's seconds add up to the wait, as a synchronous request's add up to its latency."""
        requests = f["requests"]
        lines = self.client.lines(getattr(batch, "output_file_id", None))
        errors = self.client.lines(getattr(batch, "error_file_id", None))
        answered: set[str] = set()
        seen = set()
        invalid = 0
        for line in lines:
            cid = line.get("custom_id")
            rows = requests.get(cid)
            response = line.get("response") or {}
            if rows is None or cid in seen or response.get("status_code") != 200:
                continue
            seen.add(cid)
            keys = [k for k, _ in rows]
            result = self.teacher.reply_result(response.get("body") or {}, keys, waited / max(len(requests), 1))
            if not result.answers:
                invalid += 1
            keep(result, [(k, None, h) for k, h in rows], batch.id, cid)
            answered |= {h for k, h in rows if k in result.answers}
        failed = len(requests) - len(seen)
        status = batch.status
        note = (
            f"{status}: {len(seen):,} of {len(requests):,} requests answered, {len(errors):,} error lines, "
            f"{invalid:,} bodies with no answer"
        )
        if getattr(batch, "errors", None) and getattr(batch.errors, "data", None):
            note += "; " + "; ".join(str(e.message) for e in batch.errors.data[:3] if getattr(e, "message", None))
        self.registry.close(f["file_id"], status, note)
        self.report.endings[status] = self.report.endings.get(status, 0) + 1
        self.report.failed_lines += failed
        self.report.invalid_lines += invalid
        self.log(f"teacher batch {batch.id}: {note}")
        return answered
