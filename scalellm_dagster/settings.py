"""Every setting, read from environment variables once, typed, with defaults that need nothing installed.

`Settings.from_env()` is the only place that reads `SCALELLM_*` / `OPENAI_*` variables; the code location, the
CLI and the sensors take the `Settings` it returns. docs/configuration.md, generated from `DOCS`, lists them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_CORPUS = PACKAGE_DIR / "demo" / "banking77.parquet"
DEMO_TASKS = PACKAGE_DIR / "demo" / "tasks.yaml"
CSV_ID_TYPES = ("text", "infer")  # how a CSV/TSV id column is read: verbatim, or as the reader infers it
MODES = ("sync", "batch")  # how the `openai` teacher sends its requests (teachers/batch_api.py)
REASK = ("batch", "sync")  # how rows a batch left without an answer are asked again
FALLBACK = ("error", "sync")  # what an endpoint without a Batch API gets


class SettingError(ValueError):
    """A configuration value (an environment variable) that cannot be used; the message says which and why."""


def default_data_dir() -> Path:
    # In a checkout the warehouse lives in the repo's ignored data/ folder; installed elsewhere, under the cwd.
    repo = PACKAGE_DIR.parent
    return (repo if (repo / "pyproject.toml").is_file() else Path.cwd()) / "data"


def _var(name: str, default, lower: bool = False, feeds: str | tuple[str, ...] = ()):
    """A setting read from the environment variable `name`; `feeds` names the resource options it sets
    (`"teacher.model"`), which `Settings.options` hands over. What it means is in `DOCS`."""
    return field(
        default=default,
        metadata={"env": name, "lower": lower, "feeds": (feeds,) if isinstance(feeds, str) else feeds},
    )


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _cast(name: str, raw: str, default):
    kind = type(default) if default is not None else str
    if kind is bool:
        word = raw.strip().lower()
        if word not in (*TRUE_WORDS, *FALSE_WORDS):
            raise SettingError(
                f"environment variable {name}={raw!r}: expected one of {', '.join(TRUE_WORDS)} or "
                f"{', '.join(FALSE_WORDS)}"
            )
        return word in TRUE_WORDS
    try:
        return kind(raw)
    except ValueError:
        expected = {int: "a whole number", float: "a number"}.get(kind, kind.__name__)
        raise SettingError(f"environment variable {name}={raw!r}: expected {expected}") from None


# What each setting means, by field name: the component's schema (`dg utils inspect-component`) shows it.
DOCS = {
    "corpus": (
        "Source rows: a Parquet/CSV/TSV/JSONL file, a folder of them, `file.duckdb::table`, or "
        "`postgresql://user@host:port/db::schema.table` (or `::SELECT ...`)"
    ),
    "tasks": "The tasks YAML file (README: Add a task)",
    "duckdb_path": ("The warehouse, a DuckDB file: every asset's table, the teacher's answer cache"),
    "duckdb_memory_limit": "DuckDB's buffer memory per connection (it spills to disk beyond)",
    "gx_dir": (
        "The folder of the Great Expectations project the checks keep (`gx/` inside it: suites to edit, "
        "validation history, Data Docs); unset: the warehouse's folder"
    ),
    "data_docs": (
        "Render the checks' Data Docs pages at each validation (about 0.3 s a check). off: validation results are "
        "still stored in the GX project, and each check links to its result's JSON; build the pages later with "
        "GX's `context.build_data_docs()`"
    ),
    "data_docs_url": (
        "The address the Data Docs site (`gx/uncommitted/data_docs/local_site` in the GX project) is served from, "
        "for the checks' links (a browser opens no file:// link from the Dagster UI); unset: the pages' file:// "
        "addresses"
    ),
    "id_column": "The source's id column: unique, int or string, kept exactly as the source has it",
    "text_column": "The source's text column: what the teacher reads and the embedder embeds",
    "csv_id_type": (
        "How a CSV/TSV id column is read: `text` (verbatim: `00042` stays `00042`) or `infer` (integers when they all "
        "parse)"
    ),
    "max_text_chars": "Longest text the corpus check accepts",
    "predictions_to": (
        "`postgresql://user@host:port/db::schema`: each task's predictions also upserted into "
        "`<schema>.<task>_predictions`"
    ),
    "embedder": (
        "`static` (offline, shipped: MiniLM distilled to static token vectors), `lsa` (offline TF-IDF + SVD fitted on "
        "the corpus), `minilm` (offline all-MiniLM-L6-v2, optional extra) or `openai`"
    ),
    "embedding_dim": "LSA dimensions",
    "embedding_model": "The `openai` embedder's model",
    "embedding_batch_size": "Texts per embedding request or batch",
    "embedding_refit": "Refit LSA on the whole corpus and embed every row again",
    "embedding_rpm": (
        "The `openai` embeddings endpoint's requests per minute, paced as the teacher's (0: from its headers)"
    ),
    "embedding_tpm": "The `openai` embeddings endpoint's tokens per minute (input characters / 4; 0: from its headers)",
    "embedding_price_per_mtok": "USD per million input tokens of the `openai` embedder, for `scalellm estimate`",
    "teacher": (
        "`simulated_hard` (offline, not an LLM: wrong on the rows a model finds hard), `simulated` (offline, not an "
        "LLM: wrong at random), `openai` (any OpenAI-compatible endpoint) or `local` (a GGUF model run by llama.cpp "
        "in a worker process, `llm` extra)"
    ),
    "teacher_model": "Chat model of the `openai` teacher",
    "teacher_batch_size": "Rows asked about in one teacher request",
    "teacher_concurrency": "Teacher requests in flight at once",
    "teacher_rpm": (
        "The endpoint's requests per minute: requests are paced to it (0: taken from its `x-ratelimit-*` headers when "
        "it sends them)"
    ),
    "teacher_tpm": "The endpoint's tokens per minute, paced as the requests (0: from its headers)",
    "shared_requests": "Ask every task's question in one request about rows two or more tasks' samples share",
    "teacher_max_retries": (
        "Retries of 5xx, timeouts and dropped connections (backoff, `Retry-After` honoured; 429s are waited out "
        "apart, up to 20)"
    ),
    "teacher_timeout_seconds": "Per-request timeout, in seconds",
    "teacher_store_seconds": (
        "How long received answers may wait before the warehouse write (each request's answers are journaled to disk "
        "before the next request is sent whatever this is)"
    ),
    "teacher_mode": (
        "`sync` (a request at a time) or `batch`: the `openai` teacher's rows go through the endpoint's Batch API "
        "(`/v1/files`, `/v1/batches`) at `batch_price_factor` of the price, resumed across runs, never submitted "
        "twice (docs/teachers.md); a task's `teacher_mode` overrides it"
    ),
    "batch_price_factor": "The Batch API's price as a share of the synchronous price, for the ledger and estimates",
    "batch_min_rows": "Fewer rows than this to ask go synchronously in batch mode (a batch's wait is not worth it)",
    "batch_poll_seconds": "Seconds between two looks at a running batch (each logs its status and requests done)",
    "batch_wait_seconds": (
        "How long a step waits for its batches; past it the step ends, freeing its run slot, the batches stay "
        "recorded, and the next run resumes them"
    ),
    "batch_reask": "`batch` or `sync`: how rows a batch left without a valid answer are asked again",
    "batch_fallback": "`error` (one line, the step stops) or `sync`: what an endpoint without a Batch API gets",
    "price_in_per_mtok": "USD per million prompt tokens, for the cost ledger and `max_teacher_cost_usd`",
    "price_out_per_mtok": "USD per million completion tokens, for the cost ledger",
    "simulated_accuracy": "The simulation's accuracy",
    "simulated_bias": (
        "Share of the simulation's wrong answers given to one label (`simulated_hard`: the most frequent; "
        "`simulated`: the first), as a small real LLM does"
    ),
    "simulated_latency_ms": "The simulation's time per request, in milliseconds",
    "local_model": "The `local` teacher's GGUF file (default: SmolLM2-135M-Instruct, packaged)",
    "local_threads": "The `local` teacher's llama.cpp threads",
    "openai_base_url": "Any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp's server...); unset: OpenAI",
    "openai_api_key": "The endpoint's key: passed as a Dagster `EnvVar`, never written to logs, metadata or tables",
    "dask": "`local:N`: start N local Dask worker processes for the run",
    "dask_scheduler": (
        "A Dask scheduler (`tcp://host:8786`, or the path of its scheduler file): embedding and predicting run on its "
        "workers"
    ),
    "dask_parts": (
        "Where the parts go (a folder or an `s3://`/`gs://` URL every worker reaches; default: beside the warehouse)"
    ),
    "dask_part_rows": "Rows per part",
    "upstream_assets": (
        "Asset keys (`raw/tickets`, comma-separated) whose table the corpus reads: `corpus` depends on them in place "
        "of `corpus_source`"
    ),
    "automation": (
        "`on`: the automation sensors (conditions, the source's reports, the model policy) run without being switched "
        "on in the UI"
    ),
    "sensor_interval_seconds": "How often the daemon evaluates the sensors, in seconds",
}


@dataclass(frozen=True)
class Settings:
    corpus: str = _var("SCALELLM_CORPUS", str(DEMO_CORPUS), feeds="source.path")
    tasks: str = _var("SCALELLM_TASKS", str(DEMO_TASKS))
    duckdb_path: str = _var(
        "SCALELLM_DUCKDB_PATH", "", feeds="warehouse.database"
    )  # from_env: data/scalellm.duckdb when unset
    duckdb_memory_limit: str = _var("SCALELLM_DUCKDB_MEMORY_LIMIT", "2GB", feeds="warehouse.memory_limit")
    gx_dir: str = _var("SCALELLM_GX_DIR", "", feeds="warehouse.gx_dir")
    data_docs_url: str = _var("SCALELLM_DATA_DOCS_URL", "", feeds="warehouse.data_docs_url")
    data_docs: bool = _var("SCALELLM_DATA_DOCS", True, feeds="warehouse.data_docs")
    id_column: str = _var("SCALELLM_ID_COLUMN", "id", feeds="source.id_column")
    text_column: str = _var("SCALELLM_TEXT_COLUMN", "text", feeds="source.text_column")
    csv_id_type: str = _var("SCALELLM_CSV_ID_TYPE", "text", lower=True, feeds="source.csv_id_type")
    max_text_chars: int = _var("SCALELLM_MAX_TEXT_CHARS", 20_000, feeds="source.max_text_chars")
    # postgresql://user@host:port/db::schema: each task's predictions upserted into <schema>.<task>_predictions
    predictions_to: str = _var("SCALELLM_PREDICTIONS_TO", "", feeds="sink.location")
    embedder: str = _var("SCALELLM_EMBEDDER", "static", lower=True)
    embedding_dim: int = _var("SCALELLM_EMBEDDING_DIM", 384, feeds="embedder.dim")
    embedding_model: str = _var("SCALELLM_EMBEDDING_MODEL", "text-embedding-3-small", feeds="embedder.model")
    embedding_batch_size: int = _var("SCALELLM_EMBEDDING_BATCH_SIZE", 256, feeds="embedder.batch_size")
    embedding_refit: bool = _var("SCALELLM_EMBEDDING_REFIT", False, feeds="embedder.refit")
    embedding_rpm: float = _var("SCALELLM_EMBEDDING_RPM", 0.0, feeds="embedder.requests_per_minute")
    embedding_tpm: float = _var("SCALELLM_EMBEDDING_TPM", 0.0, feeds="embedder.tokens_per_minute")
    embedding_price_per_mtok: float = _var("SCALELLM_EMBEDDING_PRICE_PER_MTOK", 0.02, feeds="embedder.price_per_mtok")
    teacher: str = _var("SCALELLM_TEACHER", "simulated_hard", lower=True)
    teacher_model: str = _var("SCALELLM_TEACHER_MODEL", "gpt-4o-mini", feeds="teacher.model")
    teacher_batch_size: int = _var("SCALELLM_TEACHER_BATCH_SIZE", 10, feeds="teacher.batch_size")
    teacher_concurrency: int = _var("SCALELLM_TEACHER_CONCURRENCY", 8, feeds="teacher.concurrency")
    teacher_rpm: float = _var("SCALELLM_TEACHER_RPM", 0.0, feeds="teacher.requests_per_minute")
    teacher_tpm: float = _var("SCALELLM_TEACHER_TPM", 0.0, feeds="teacher.tokens_per_minute")
    # one request asks every task's question about rows in two or more tasks' samples (teachers/multi_task.py)
    shared_requests: bool = _var("SCALELLM_SHARED_REQUESTS", False)
    teacher_max_retries: int = _var("SCALELLM_TEACHER_MAX_RETRIES", 4, feeds="teacher.max_retries")
    teacher_timeout_seconds: float = _var("SCALELLM_TEACHER_TIMEOUT_SECONDS", 60.0, feeds="teacher.timeout_seconds")
    teacher_store_seconds: float = _var("SCALELLM_TEACHER_STORE_SECONDS", 1.0, feeds="teacher.store_window_seconds")
    teacher_mode: str = _var("SCALELLM_TEACHER_MODE", "sync", lower=True, feeds="teacher.mode")
    batch_price_factor: float = _var("SCALELLM_BATCH_PRICE_FACTOR", 0.5, feeds="teacher.batch_price_factor")
    batch_min_rows: int = _var("SCALELLM_BATCH_MIN_ROWS", 100, feeds="teacher.batch_min_rows")
    batch_poll_seconds: float = _var("SCALELLM_BATCH_POLL_SECONDS", 30.0, feeds="teacher.batch_poll_seconds")
    batch_wait_seconds: float = _var("SCALELLM_BATCH_WAIT_SECONDS", 3600.0, feeds="teacher.batch_wait_seconds")
    batch_reask: str = _var("SCALELLM_BATCH_REASK", "batch", lower=True, feeds="teacher.batch_reask")
    batch_fallback: str = _var("SCALELLM_BATCH_FALLBACK", "error", lower=True, feeds="teacher.batch_fallback")
    price_in_per_mtok: float = _var("SCALELLM_PRICE_IN_PER_MTOK", 0.15, feeds="teacher.price_in_per_mtok")
    price_out_per_mtok: float = _var("SCALELLM_PRICE_OUT_PER_MTOK", 0.60, feeds="teacher.price_out_per_mtok")
    simulated_accuracy: float = _var("SCALELLM_SIMULATED_ACCURACY", 0.9, feeds="teacher.simulated_accuracy")
    simulated_bias: float = _var("SCALELLM_SIMULATED_BIAS", 0.0, feeds="teacher.simulated_bias")
    simulated_latency_ms: float = _var("SCALELLM_SIMULATED_LATENCY_MS", 20.0, feeds="teacher.simulated_latency_ms")
    local_model: str | None = _var("SCALELLM_LOCAL_MODEL", None, feeds="teacher.local_model")
    local_threads: int = _var("SCALELLM_LOCAL_THREADS", 1, feeds="teacher.local_threads")
    openai_base_url: str | None = _var("OPENAI_BASE_URL", None, feeds=("embedder.base_url", "teacher.base_url"))
    openai_api_key: str | None = _var("OPENAI_API_KEY", None)  # passed on as an EnvVar: its value is never shown
    dask: str = _var("SCALELLM_DASK", "")
    dask_scheduler: str | None = _var("SCALELLM_DASK_SCHEDULER", None, feeds="cluster.scheduler")
    dask_parts: str | None = _var("SCALELLM_DASK_PARTS", None, feeds="cluster.parts_root")
    dask_part_rows: int = _var("SCALELLM_DASK_PART_ROWS", 50_000, feeds="cluster.rows_per_part")
    # asset keys (a/b/c), comma-separated, of other assets whose table the corpus reads: they become its parents
    upstream_assets: str = _var("SCALELLM_UPSTREAM_ASSETS", "")
    # on: the automation sensors (conditions, the source's reports, the model policy) start running by themselves
    automation: bool = _var("SCALELLM_AUTOMATION", False)
    sensor_interval_seconds: int = _var("SCALELLM_SENSOR_INTERVAL_SECONDS", 60)

    @classmethod
    def from_env(cls, environ=None) -> Settings:
        environ = os.environ if environ is None else environ
        if environ.get("SCALELLM_SHARDS") not in (None, "", "0"):
            raise SettingError(
                "SCALELLM_SHARDS is gone: the row-parallel steps run on a Dask cluster instead. Set "
                "SCALELLM_DASK=local:N (N worker processes here) or SCALELLM_DASK_SCHEDULER="
                "tcp://host:8786 (docs/cluster.md), and unset SCALELLM_SHARDS"
            )
        if environ.get("SCALELLM_REFRESH_CRON"):
            raise SettingError(
                "SCALELLM_REFRESH_CRON is gone: refreshes follow the source (corpus_source_sensor reports a change and "
                "the assets' automation conditions refresh only what it touched). Switch the automation on with "
                "SCALELLM_AUTOMATION=on (docs/automation.md), give a task a `retrain: {cron: ...}` to replace its "
                "model on a schedule, and unset SCALELLM_REFRESH_CRON"
            )
        values = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                value = _cast(f.metadata["env"], raw, f.default)
                values[f.name] = value.lower() if f.metadata["lower"] else value
        values.setdefault("duckdb_path", str(default_data_dir() / "scalellm.duckdb"))
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuses values no run could use, naming the setting and what it expects."""
        if self.csv_id_type not in CSV_ID_TYPES:
            raise SettingError(
                f"SCALELLM_CSV_ID_TYPE={self.csv_id_type!r}: expected one of {list(CSV_ID_TYPES)} "
                "(how a CSV/TSV id column is read; 'text' keeps keys verbatim)"
            )
        if self.dask and not (self.dask.startswith("local:") and self.dask[6:].isdigit() and int(self.dask[6:]) > 0):
            raise SettingError(
                f"SCALELLM_DASK={self.dask!r}: expected local:N (N local worker processes, N >= 1); "
                "to use a running cluster set SCALELLM_DASK_SCHEDULER=tcp://host:8786 instead"
            )
        for name, value in (("SCALELLM_TEACHER_RPM", self.teacher_rpm), ("SCALELLM_TEACHER_TPM", self.teacher_tpm)):
            if value < 0:
                raise SettingError(
                    f"environment variable {name}={value:g}: expected the endpoint's limit per minute, or 0 to take "
                    "it from the endpoint's x-ratelimit headers"
                )
        for name, value, allowed in (
            ("SCALELLM_TEACHER_MODE", self.teacher_mode, MODES),
            ("SCALELLM_BATCH_REASK", self.batch_reask, REASK),
            ("SCALELLM_BATCH_FALLBACK", self.batch_fallback, FALLBACK),
        ):
            if value not in allowed:
                raise SettingError(f"environment variable {name}={value!r}: expected one of {list(allowed)}")
        if self.teacher_mode == "batch" and self.teacher != "openai":
            raise SettingError(
                f"environment variable SCALELLM_TEACHER_MODE=batch: the Batch API is an OpenAI-compatible "
                f"endpoint's, and the teacher is {self.teacher!r}; set SCALELLM_TEACHER=openai (with "
                "OPENAI_BASE_URL/OPENAI_API_KEY), or unset SCALELLM_TEACHER_MODE"
            )
        if not 0 < self.batch_price_factor <= 1:
            raise SettingError(
                f"environment variable SCALELLM_BATCH_PRICE_FACTOR={self.batch_price_factor:g}: expected the batch "
                "price as a share of the synchronous price, above 0 and at most 1 (0.5: half)"
            )
        self.upstream_keys  # noqa: B018 -- refuses a malformed key list when the settings are read
        if self.sensor_interval_seconds < 1:
            raise SettingError(
                f"environment variable SCALELLM_SENSOR_INTERVAL_SECONDS={self.sensor_interval_seconds}"
                ": expected a whole number of seconds, at least 1"
            )

    def options(self, resource: str) -> dict:
        """The options of `resource` ("teacher", "embedder", ...) these settings set, by option name."""
        out = {}
        for f in fields(self):
            for feed in f.metadata["feeds"]:
                owner, option = feed.split(".")
                if owner == resource:
                    out[option] = getattr(self, f.name)
        return out

    @property
    def upstream_keys(self) -> list[list[str]]:
        """SCALELLM_UPSTREAM_ASSETS as asset key paths."""
        keys = []
        for item in self.upstream_assets.split(","):
            if not item.strip():
                continue
            path = [part.strip() for part in item.strip().split("/")]
            if not all(path):
                raise SettingError(
                    f"SCALELLM_UPSTREAM_ASSETS={self.upstream_assets!r}: {item.strip()!r} is not an asset key; "
                    "expected keys written as in the Dagster UI, parts joined by / (raw/tickets), several separated "
                    "by commas"
                )
            keys.append(path)
        return keys

    @property
    def dask_local_workers(self) -> int:
        return int(self.dask[6:]) if self.dask else 0

    @property
    def cluster(self) -> str:
        """The cluster setting as given (a scheduler address or file, local:N), or "" for in process."""
        return self.dask_scheduler or self.dask


# The instance folder `scalellm` makes when DAGSTER_HOME is unset (data/dagster_home). Every step that writes the
# warehouse is in that file's concurrency pool (`names.warehouse_pool`); a pool with no limit of its own gets this
# default: one such step at a time, and the runs of other code locations (other pools, or none) are not held back.
OWN_INSTANCE_YAML = """# Written by scalellm for its own instance folder; yours to edit: scalellm never writes it again.
telemetry:
  enabled: false
nux:
  enabled: false
concurrency:
  pools:
    default_limit: 1
"""


def ensure_dagster_home(path: Path) -> Path:
    """A persistent Dagster instance folder. Only a folder without a dagster.yaml gets one (OWN_INSTANCE_YAML: offline
    by design, so telemetry and the sign-up prompt are off; pools default to one step at a time); an existing
    dagster.yaml is the user's instance and is never changed."""
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(OWN_INSTANCE_YAML)
    return path


# How the component's defs.yaml names the settings it takes in a form of its own.
ATTRIBUTE_FORMS = {"upstream_assets": "`upstream` (a list)", "openai_api_key": "none: environment only"}


def reference_markdown() -> str:
    """docs/configuration.md: every setting, its environment variable, its defs.yaml attribute, its default and what
    it means, from the fields' own metadata (a test keeps the file in step)."""

    def shown(f) -> str:
        if f.name == "duckdb_path":
            return "`data/scalellm.duckdb` (component: `data/<key_prefix>.duckdb`)"
        if isinstance(f.default, str) and f.default.startswith(str(PACKAGE_DIR)):
            return f"bundled `{Path(f.default).relative_to(PACKAGE_DIR.parent)}`"
        if f.default is None or f.default == "":
            return "unset"
        if isinstance(f.default, bool):
            return "on" if f.default else "off"
        return f"`{f.default:g}`" if isinstance(f.default, float) else f"`{f.default}`"

    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from scalellm_dagster/settings.py (python scripts/config_reference.py); do not edit. -->",
        "",
        "Every setting is an environment variable of the project's code location (`scalellm run`, `make demo`, "
        "`make ui`) and an attribute of the `ScaleLLM` component's `defs.yaml`.",
        "",
        "| variable | `defs.yaml` attribute | default | meaning |",
        "|---|---|---|---|",
    ]
    for f in fields(Settings):
        attribute = ATTRIBUTE_FORMS.get(f.name, f"`{f.name}`")
        lines.append(f"| `{f.metadata['env']}` | {attribute} | {shown(f)} | {DOCS[f.name]} |")
    return "\n".join(lines) + "\n"
