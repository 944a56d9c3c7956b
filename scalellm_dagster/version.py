"""The package version, in a module of its own: the root package lazily loads the component, and the modules below
it must not import that."""

__version__ = "0.1.0"
