"""Every asset and check step logs a heartbeat while it works (`core/heartbeat.py`): the run's log, in the UI, never
goes a minute without saying what the step is doing."""

from __future__ import annotations

import functools
import inspect

from scalellm_dagster.core.heartbeat import Heartbeat

EVERY_SECONDS = 10.0


def with_heartbeat(fn):
    """`fn`, an asset's or check's compute function, beating while it runs. Dagster reads the wrapped function's
    signature (its context and resources) through `functools.wraps`."""
    name = fn.__name__
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def steps(*args, **kwargs):
            with Heartbeat(_log(args, kwargs), name, EVERY_SECONDS):
                yield from fn(*args, **kwargs)

        return steps

    @functools.wraps(fn)
    def step(*args, **kwargs):
        with Heartbeat(_log(args, kwargs), name, EVERY_SECONDS):
            return fn(*args, **kwargs)

    return step


def _log(args, kwargs):
    context = kwargs.get("context") or next((a for a in args if hasattr(a, "log") and hasattr(a, "run")), None)
    return context.log.info if context is not None else (lambda message: None)
