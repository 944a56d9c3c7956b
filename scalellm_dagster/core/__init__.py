"""The ScaleLLM engine: sampling, students, selection, learning curves. No Dagster imports here."""
