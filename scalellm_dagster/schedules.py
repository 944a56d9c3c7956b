"""Schedules and sensors."""

from __future__ import annotations

import os

from dagster import DefaultScheduleStatus, ScheduleDefinition


def build_schedules(all_job) -> list[ScheduleDefinition]:
    return [
        ScheduleDefinition(
            name="nightly_refresh",
            job=all_job,
            cron_schedule=os.environ.get("SCALELLM_REFRESH_CRON", "0 2 * * *"),
            default_status=DefaultScheduleStatus.STOPPED,
            description="Reload the corpus and refresh everything downstream (cron from SCALELLM_REFRESH_CRON).",
        )
    ]
