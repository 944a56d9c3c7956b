"""ScaleLLM on Dagster: label every row of a table with an LLM's judgement at a fraction of its cost."""

__version__ = "0.1.0"
