"""The Dask cluster resource: where the row-parallel steps run.

`SCALELLM_DASK_SCHEDULER=tcp://host:8786` (or the path of a scheduler file) connects to a running cluster;
`SCALELLM_DASK=local:N` starts N local worker processes for the run; neither set, everything runs in process.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

# Each worker runs one task at a time on one core: native libraries must not start a thread per core on top.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class ClusterError(RuntimeError):
    """The cluster cannot be used; the message names the address and what to do."""


class ClusterResource(ConfigurableResource):
    scheduler: str | None = Field(
        default=None,
        description="tcp://host:port of a Dask scheduler, or the path of "
        "its scheduler file (`dask scheduler --scheduler-file F`).",
    )
    local_workers: int = Field(
        default=0,
        description="Start this many local worker processes for the run "
        "(SCALELLM_DASK=local:N); 0 with no scheduler: run in process.",
    )
    parts_root: str | None = Field(
        default=None,
        description="Where parts are written: a folder or an fsspec URL "
        "(s3://, gs://) every worker can read and write. Default: beside the warehouse.",
    )
    rows_per_part: int = Field(default=50_000, description="Rows per part: one task each.")
    connect_timeout_seconds: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.scheduler) or self.local_workers > 0

    def describe(self) -> str:
        return self.scheduler or f"local:{self.local_workers}"

    def parts_for(self, warehouse_path: str) -> str:
        if self.parts_root:
            return self.parts_root
        return str(Path(warehouse_path).resolve().parent / f"{Path(warehouse_path).stem}.parts")

    @contextmanager
    def session(self, warehouse_path: str, run_id: str) -> Iterator[tuple[object, str] | tuple[None, None]]:
        """(client, this run's parts folder) on a cluster, (None, None) in process. The client connects before any
        work; the run's parts are removed when it ends, published or not (the warehouse holds what was published)."""
        if not self.enabled:
            yield None, None
            return
        from scalellm_dagster.cluster.parts import join, remove_tree

        # one folder per session: two steps of a run (e.g. two tasks' predictions under the multiprocess executor)
        # each remove only their own parts
        run_folder = join(self.parts_for(warehouse_path), run_id)
        parts = join(run_folder, uuid.uuid4().hex[:8])
        with self.client() as client:
            try:
                yield client, parts
            finally:
                remove_tree(parts)
                if "://" not in run_folder:  # object stores have no folders to leave behind
                    with contextlib.suppress(OSError):  # another step's parts are still there: theirs to remove
                        os.rmdir(run_folder)

    @contextmanager
    def client(self) -> Iterator:
        """A `distributed.Client`, connected (or its local cluster started) before any work."""
        from distributed import Client, LocalCluster

        if self.scheduler:
            is_file = not self.scheduler.startswith(("tcp://", "tls://", "inproc://", "ws://", "wss://"))
            if is_file and not Path(self.scheduler).is_file():
                raise ClusterError(
                    f"SCALELLM_DASK_SCHEDULER={self.scheduler!r}: no such scheduler file; expected "
                    "tcp://host:port or the file `dask scheduler --scheduler-file` writes"
                )
            try:
                client = Client(
                    **({"scheduler_file": self.scheduler} if is_file else {"address": self.scheduler}),
                    timeout=f"{self.connect_timeout_seconds}s",
                    set_as_default=False,
                )
            except (OSError, TimeoutError) as exc:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {self.scheduler} within "
                    f"{self.connect_timeout_seconds:.0f}s ({type(exc).__name__}); start it with "
                    "`dask scheduler`, or unset SCALELLM_DASK_SCHEDULER to run in process"
                ) from None
            try:
                yield client
            finally:
                client.close()
            return
        with (
            LocalCluster(
                n_workers=self.local_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env=WORKER_ENV,
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            yield client
