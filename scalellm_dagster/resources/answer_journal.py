"""A journal of teacher answers received but not yet in the warehouse: each request's answers are appended and
flushed to disk (fsync) before the next request is sent, so a killed run never pays twice for an answer it
received, while the warehouse takes them in groups (a DuckDB write costs tens of ms; an fsync a few).

One file per labelling session, locked (flock) while the session lives. The next session to open the warehouse's
answer cache replays the files no live session holds, then removes them. Ledger lines carry a request id, so a
journal replayed after its lines reached the warehouse books nothing twice (answers are keyed by text hash).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from pathlib import Path


class AnswerJournal:
    def __init__(self, folder: Path, key: dict):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{key['run_id']}-{uuid.uuid4().hex[:8]}.jsonl"
        self.key = key
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the journal's life
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def append(self, answers: list[dict], ledger: list[dict]) -> None:
        self._file.write(json.dumps({"key": self.key, "answers": answers, "ledger": ledger}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def clear(self) -> None:
        """Everything journaled so far is in the warehouse."""
        self._file.truncate(0)
        self._file.seek(0)

    def close(self) -> None:
        """Ends the session: an empty journal (everything stored) is removed; one holding answers the warehouse
        never took (the last store failed) is kept, unlocked, for the next session to replay."""
        if not self._file.closed:
            stored = self._file.tell() == 0
            self._file.close()
            if stored:
                self.path.unlink(missing_ok=True)

    def __del__(self):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.close()


def orphaned_entries(folder: Path):
    """(path, entries) of each journal no live session holds: what killed runs received and did not store."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live session's
            handle.seek(0)
            entries = []
            for line in handle.read().splitlines():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut by the kill: its request was not complete on disk
            yield path, entries
