"""`ScaleLLM`, the Dagster Component: one instance labels one corpus. Several instances live in one project (one
`defs.yaml` each, made by `dg scaffold defs scalellm_dagster.ScaleLLM <name>`); each has its own asset keys under
its prefix, its own resources, jobs and sensors, and its own warehouse file, so nothing is shared by accident.

Its attributes are the `Settings` (`SCALELLM_TEACHER_MODEL` is `teacher_model`), with the tasks inline or in a
file, the upstream assets the corpus reads as a list, and the key prefix; relative paths are read from the
`defs.yaml`'s folder. The environment-variable code location (`scalellm_dagster.definitions`) is an instance too,
made from the environment, without a prefix."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import typing
from pathlib import Path
from typing import Annotated

import dagster as dg
from pydantic import Field, create_model, field_validator

from scalellm_dagster.graph import build_graph
from scalellm_dagster.settings import DEMO_CORPUS, DOCS, SettingError, Settings
from scalellm_dagster.tasks_config import TaskConfigError, TaskSpec, load_tasks, parse_tasks

# Settings the component takes in its own form (below) or never from YAML: the API key is a secret, read from the
# environment (OPENAI_API_KEY) and shown by name only.
_OWN_FORM = ("corpus", "tasks", "duckdb_path", "upstream_assets", "openai_api_key")
_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _settings_attributes() -> type[dg.Model]:
    """One attribute per setting, with the setting's type and default: the schema `dg` validates and documents."""
    hints = typing.get_type_hints(Settings)
    attributes = {
        f.name: (_described(hints[f.name], f"{DOCS[f.name]} ({f.metadata['env']})"), f.default)
        for f in dataclasses.fields(Settings)
        if f.name not in _OWN_FORM
    }
    return create_model("ScaleLLMSettings", __base__=dg.Model, **attributes)


def _described(kind, description: str):
    # dg's schema takes a defaulted attribute's description from its resolver
    return Annotated[kind, dg.Resolver.default(description=description)]


class ScaleLLMScaffolder(dg.Scaffolder):
    """Writes a commented defs.yaml that runs offline on a copy of the bundled demo corpus (banking77, CC BY 4.0)."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        folder = Path(request.target_path)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEMO_CORPUS, folder / "corpus.parquet")
        (folder / "defs.yaml").write_text(SCAFFOLD_YAML.format(type=request.type_name, name=_as_prefix(folder.name)))


@dg.scaffold_with(ScaleLLMScaffolder)
class ScaleLLM(dg.Component, dg.Resolvable, _settings_attributes()):
    """Label every row of a table with an LLM's judgement at a fraction of its cost: the corpus, its embeddings,
    the teacher's sample, the student candidates, the model selection report and every row's prediction, for each
    task, with their checks, jobs and automation."""

    corpus: str = Field(
        description="The table to label: a Parquet/CSV/TSV/JSONL file or a folder of them, a DuckDB table "
        "(file.duckdb::table), or a PostgreSQL table or query (postgresql://user@host/db::schema.table). A relative "
        "path is read from this defs.yaml's folder."
    )
    tasks: list[dict[str, typing.Any]] | str = Field(
        description="The classification tasks: a list (name, instruction, labels, budget, ...; README: Add a task) "
        "or the path of a tasks YAML file, relative to this defs.yaml's folder."
    )
    key_prefix: _described(
        str | None,
        "The prefix of every asset key, resource key, job and sensor of this instance (default: the folder's name)",
    ) = None
    upstream: _described(
        list[str],
        "Asset keys (raw/tickets) of your assets whose table the corpus reads: they become its parents and their new "
        "materializations refresh it (in place of the corpus_source sensor)",
    ) = []
    duckdb_path: _described(
        str | None,
        "The instance's own warehouse, a DuckDB file (default: data/<key_prefix>.duckdb in the project)",
    ) = None

    @field_validator("tasks")
    @classmethod
    def _tasks_validate(cls, tasks):
        if isinstance(tasks, list):
            try:
                parse_tasks(tasks, where="tasks")
            except TaskConfigError as exc:
                raise ValueError(str(exc)) from None
        return tasks

    @field_validator("key_prefix")
    @classmethod
    def _prefix_is_a_name(cls, prefix):
        if prefix is not None and not _PREFIX.match(prefix):
            raise ValueError(
                f"expected lower-case letters, digits and underscores, starting with a letter (it begins asset "
                f"and resource keys), got {prefix!r}"
            )
        return prefix

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        folder = Path(context.path)
        name = self.key_prefix or _as_prefix(folder.name)
        try:
            return self.definitions(
                folder=folder,
                prefix=(name,),
                default_warehouse=Path(context.project_root) / "data" / f"{name}.duckdb",
            )
        except SettingError as exc:
            raise SettingError(f"{folder / 'defs.yaml'}: {_in_yaml_terms(str(exc))}") from None

    def definitions(self, folder: Path, prefix: tuple[str, ...], default_warehouse: Path) -> dg.Definitions:
        settings = self.settings(folder, default_warehouse)
        tasks = self.task_specs(folder)
        return build_graph(settings, [dataclasses.replace(t, key_prefix=prefix) for t in tasks], prefix)

    def settings(self, folder: Path, default_warehouse: Path) -> Settings:
        given = {name: getattr(self, name) for name in type(self).model_fields if hasattr(Settings, name)}
        # the other settings that name a file or folder are read from the defs.yaml's folder too
        given.update({k: _beside(folder, given[k]) for k in ("local_model", "dask_parts") if given.get(k)})
        settings = Settings(
            **{k: v for k, v in given.items() if k not in _OWN_FORM},
            corpus=_beside(folder, self.corpus),
            tasks="" if isinstance(self.tasks, list) else _beside(folder, self.tasks),
            duckdb_path=_beside(folder, self.duckdb_path) if self.duckdb_path else str(default_warehouse),
            upstream_assets=",".join(self.upstream),
            openai_api_key=os.environ.get("OPENAI_API_KEY") or None,
        )
        settings.check()
        return settings

    def task_specs(self, folder: Path) -> list[TaskSpec]:
        if isinstance(self.tasks, list):
            return parse_tasks(self.tasks, where="tasks")
        return load_tasks(_beside(folder, self.tasks))

    @classmethod
    def from_settings(cls, settings: Settings) -> ScaleLLM:
        """The instance the environment variables describe (`scalellm_dagster.definitions`)."""
        return cls(
            **{
                f.name: getattr(settings, f.name)
                for f in dataclasses.fields(Settings)
                if f.name not in ("upstream_assets", "openai_api_key")
            },
            upstream=["/".join(path) for path in settings.upstream_keys],
        )


def _in_yaml_terms(message: str) -> str:
    """A setting's message names its environment variable; in a defs.yaml the attribute is what the user wrote."""
    for f in dataclasses.fields(Settings):
        message = re.sub(rf"(environment variable )?\b{f.metadata['env']}\b", f"attribute {f.name}", message)
    return message


def _as_prefix(folder_name: str) -> str:
    prefix = re.sub(r"[^a-z0-9_]", "_", folder_name.lower())
    if not _PREFIX.match(prefix):
        raise SettingError(
            f"folder {folder_name!r} cannot name the instance's assets: set key_prefix in its defs.yaml (lower-case "
            "letters, digits and underscores, starting with a letter)"
        )
    return prefix


def _beside(folder: Path, value: str) -> str:
    """A path relative to the defs.yaml's folder, made absolute; URLs (postgresql://...) as they are. A DuckDB table
    (`file.duckdb::table`) keeps its table."""
    if "://" in value or value == ":memory:":
        return value
    path, sep, rest = value.partition("::")
    return str(folder / Path(path).expanduser()) + sep + rest


SCAFFOLD_YAML = """\
# A ScaleLLM instance: it labels every row of one table with an LLM's judgement, at a fraction of its cost.
# Its assets are {name}/corpus, {name}/embeddings and {name}/<task>/... (`dg list defs`); materialize them with
# `dg launch --job {name}_scalellm_all` or from the UI (`dg dev`). Every attribute, with its meaning:
# `dg utils inspect-component scalellm_dagster.ScaleLLM`.
type: {type}

attributes:
  # The table to label. corpus.parquet is a copy of the bundled demo (banking77, CC BY 4.0, PolyAI: 13,083 online-
  # banking messages with their intent and topic); put your own here: a file or a folder of Parquet/CSV/TSV/JSONL
  # files, a DuckDB table (file.duckdb::table), or a PostgreSQL table (postgresql://user@host/db::schema.table).
  corpus: corpus.parquet
  id_column: id
  text_column: text

  # Your assets whose table the corpus reads (a dbt model, an ingestion table): they become its parents.
  # upstream: [raw/tickets]

  # The warehouse (default: data/{name}.duckdb in the project).
  # duckdb_path: ../../../data/{name}.duckdb

  # Offline by default: static embeddings and simulated_hard, a SIMULATION of an LLM that answers from each task's
  # gold_column with realistic mistakes. For a real LLM: teacher: openai, OPENAI_API_KEY in the environment, and
  # openai_base_url for vLLM, Ollama or another OpenAI-compatible server.
  embedder: static
  teacher: simulated_hard
  # teacher_model: gpt-4o-mini
  # openai_base_url: "{{{{ env.OPENAI_BASE_URL }}}}"

  # Automation: new source rows refresh the corpus, embeddings and predictions; a task's model is rebuilt when its
  # definition changes.
  automation: false

  # The classification tasks (or the path of a tasks YAML file).
  tasks:
    - name: topic
      instruction: Decide which support team should handle the online-banking customer's message.
      gold_column: topic  # the simulation's answers; drop it with a real LLM
      budget: 400
      labels:
        cards: ordering, delivering, activating, linking or replacing a card; PINs; card not working
        payments_and_cash: card payments, refunds, direct debits and cash withdrawals
        transfers: sending or receiving bank transfers, their status, timing, cancellation or failure
        top_ups: adding money to the account by card, bank transfer, cash or cheque
        fees_and_exchange: fees charged, exchange rates and currencies
        account_and_security: identity verification, personal details, passcodes, lost phones, closing the account
"""


__all__ = ["ScaleLLM"]
