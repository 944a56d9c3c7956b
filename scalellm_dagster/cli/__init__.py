"""The run harness, a front end over the code location and the flow: the `scalellm` command (`main`), the
benchmark (`bench`), the end-of-run summary, failure messages, the workspace run and the batch-size probe."""

from scalellm_dagster.cli.main import main

__all__ = ["main"]
