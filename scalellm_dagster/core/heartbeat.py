"""A step's heartbeat: what it is doing, logged at least every few seconds while it works, so a run's log never
hides a minute of work (a scan, a write or a simulation can run tens of seconds without a line of its own)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# The beating steps of this process, innermost last. Not a context variable: the work a step does on its thread
# pools (the teacher's requests) says what it is doing too. A process runs one step at a time (Dagster's in-process
# executor runs steps in turn, the multiprocess one a step a process).
_ACTIVE: list[Heartbeat] = []


class Heartbeat:
    """`with Heartbeat(log, "embeddings"):` logs "embeddings: still <doing> (20s)" every `every` seconds until the
    block ends; `phase(...)` inside it says what the step is doing now."""

    def __init__(self, log: Callable[[str], None], step: str, every: float = 10.0):
        self.log, self.step, self.every = log, step, every
        self.doing = "working"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._phase_started = self._started

    def __enter__(self) -> Heartbeat:
        _ACTIVE.append(self)
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.step}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self._thread.join(timeout=1.0)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            now = time.monotonic()
            try:
                self.log(
                    f"{self.step}: still {self.doing} ({now - self._phase_started:.0f}s; "
                    f"{now - self._started:.0f}s since the step started)"
                )
            except Exception:  # noqa: BLE001 - a log that fails (the run ending) must not kill the step
                return


def phase(doing: str) -> None:
    """What the current step is doing now (its heartbeat says so); a no-op outside a heartbeat."""
    if _ACTIVE:
        beat = _ACTIVE[-1]
        beat.doing = doing
        beat._phase_started = time.monotonic()
