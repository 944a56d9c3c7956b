"""Each instance of the ScaleLLM component has its own resources (its warehouse, source, teacher…) under its own
keys (`tickets_warehouse`): Dagster requires one definition per resource key in a code location, so two instances
cannot both bind `warehouse`. The asset and check functions keep their plain parameter names (`warehouse:
Warehouse`); `bind_resources` shows Dagster the instance's keys instead."""

from __future__ import annotations

import functools
import inspect

from scalellm_dagster.names import RESOURCES, prefixed


def bind_resources(fn, prefix: tuple[str, ...]):
    """`fn` (an asset's or check's compute function) asking for the resources of the instance with `prefix`:
    its parameter `warehouse` is declared to Dagster as `<prefix>_warehouse` and passed back under its own name.
    Without a prefix (the environment-variable code location) `fn` is returned as it is."""
    if not prefix:
        return fn
    # annotations evaluated here: Dagster would resolve string annotations in this module, not in fn's
    signature = inspect.signature(fn, eval_str=True)
    renamed = {name: prefixed(prefix, name) for name in signature.parameters if name in RESOURCES}
    if not renamed:
        return fn
    original = {key: name for name, key in renamed.items()}

    def own_names(kwargs: dict) -> dict:
        return {original.get(key, key): value for key, value in kwargs.items()}

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def bound(*args, **kwargs):
            yield from fn(*args, **own_names(kwargs))

    else:

        @functools.wraps(fn)
        def bound(*args, **kwargs):
            return fn(*args, **own_names(kwargs))

    bound.__signature__ = signature.replace(
        parameters=[p.replace(name=renamed.get(p.name, p.name)) for p in signature.parameters.values()]
    )
    return bound


def resources_of(resources: dict, prefix: tuple[str, ...]) -> dict:
    """The instance's resources under its keys (`{"tickets_warehouse": Warehouse(...)}`)."""
    return {prefixed(prefix, name): resource for name, resource in resources.items()}
