"""Dagster assets: thin wiring of resources to the engine, with metadata for the UI."""
