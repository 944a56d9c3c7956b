"""ScaleLLM on Dagster: label every row of a table with an LLM's judgement at a fraction of its cost.

`scalellm_dagster.ScaleLLM` is the Dagster Component (`dg scaffold defs scalellm_dagster.ScaleLLM <name>`); it is
loaded on first use, so the engine's modules import no Dagster."""

from scalellm_dagster.version import __version__

__all__ = ["ScaleLLM", "__version__"]


def __getattr__(name: str):
    if name == "ScaleLLM":
        from scalellm_dagster.component import ScaleLLM

        return ScaleLLM
    raise AttributeError(f"module 'scalellm_dagster' has no attribute {name!r}")


def __dir__() -> list[str]:
    # `dg` finds the package's components by listing the registry module's names
    return [*globals(), "ScaleLLM"]
