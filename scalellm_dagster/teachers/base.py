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


@dataclass
class BatchResult:
    """One request's outcome. Rows missing from `answers` were not answered and may be asked again."""

    answers: dict[str, Answer]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    tokens_estimated: bool = False
    notes: list[str] = field(default_factory=list)


class Teacher(Protocol):
    provider: str
    model: str

    @property
    def prompt_version(self) -> str: ...

    def label_batch(self, rows: list[tuple[str, str]]) -> BatchResult:
        """Label `(key, text)` rows in one request; answers are keyed by the same keys."""
        ...

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float: ...


class TeacherError(RuntimeError):
    """The teacher could not label the sample; the message says how much was answered and cached."""
