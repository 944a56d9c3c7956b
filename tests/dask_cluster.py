"""A real Dask cluster on 127.0.0.1 for tests: `dask scheduler` and `dask worker --nthreads 1` processes started
with the command-line entry points, as on real machines, talking over TCP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).with_name("dask"))


class Cluster:
    def __init__(self, folder: Path, workers: int):
        self.folder, self.scheduler_file = folder, folder / "scheduler.json"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "RAYON_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        self.workers = workers

    def _start(self, name: str, *args: str) -> None:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - the process writes it for its life
        self.procs[name] = subprocess.Popen(
            [DASK, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, start_new_session=True
        )

    def start(self, timeout: float = 60.0) -> Cluster:
        self._start(
            "scheduler",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.scheduler_file),
        )
        self._wait(lambda: self.scheduler_file.exists(), timeout, "the scheduler's file")
        for n in range(1, self.workers + 1):
            self.start_worker(f"w{n}")
        self._wait(lambda: len(self.worker_names()) == self.workers, timeout, f"{self.workers} workers")
        return self

    def start_worker(self, name: str) -> None:
        self._start(
            name,
            "worker",
            "--scheduler-file",
            str(self.scheduler_file),
            "--nthreads",
            "1",
            "--nworkers",
            "1",
            "--name",
            name,
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        )

    @property
    def address(self) -> str:
        return json.loads(self.scheduler_file.read_text())["address"]

    def worker_names(self) -> list[str]:
        from distributed import Client

        with Client(scheduler_file=str(self.scheduler_file), timeout="5s") as client:
            return sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())

    def kill_worker(self, name: str) -> None:
        """SIGKILL to the worker's whole process group (its nanny and the worker process)."""
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(10)

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        logs = "\n".join(p.read_text()[-1500:] for p in self.folder.glob("*.log"))
        raise RuntimeError(f"dask cluster: {what} not ready within {timeout:.0f}s; logs:\n{logs}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def dask_cluster(folder: Path, workers: int = 2):
    cluster = Cluster(folder, workers)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
