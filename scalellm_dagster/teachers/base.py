"""What every teacher answers with, whatever is behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Answer:
    """One row's answer: `label` is set only when the teacher named one of the task's labels."""

    label: str | None
    raw: str

    @property
    def valid(self) -> bool:
        return self.label is not None

    @property
    def normalised(self) -> bool:
        """Accepted after setting aside case, whitespace or quotes: the raw text differs from the label."""
        return self.label is not None and self.raw != self.label


@dataclass
class BatchResult:
    """One request's outcome. Rows missing from `answers` were not answered and may be asked again."""

    answers: dict[str, Answer]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    tokens_estimated: bool = False
    notes: list[str] = field(default_factory=list)
    response_format: str | None = None  # the structured-output form the request used (real LLMs)


class Teacher(Protocol):
    provider: str
    model: str

    @property
    def prompt_version(self) -> str: ...

    def label_batch(self, rows: list[tuple[str, str]]) -> BatchResult:
        """Label `(key, text)` rows in one request; answers are keyed by the same keys."""
        ...

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float: ...


class TeacherNotConfigured(RuntimeError):
    """The configured teacher cannot serve this task (the simulation without a gold column); the message says
    which setting to change."""


class TeacherError(RuntimeError):
    """The teacher could not label the sample; the message says how much was answered and cached."""


class TeacherFatalError(TeacherError):
    """A request that no retry can fix (a refused key, an unknown model, a request the server rejects): the run
    stops at once. The message is one line: the endpoint, what it said, and what to do."""


class TeacherRequestError(RuntimeError):
    """A request that failed after the client's retries (429, 5xx, timeouts, dropped connections)."""


class MalformedReplyError(RuntimeError):
    """A reply that is not a chat completion (HTML, a cut body, no choices), after the teacher's own retries."""
