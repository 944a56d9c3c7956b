"""What a failed run says last: the cause and the fix, taken from the step failures and the failed checks, not
buried in tracebacks."""

from __future__ import annotations

# Root causes whose message is already written for a person: it is shown as is. Anything else is a bug or an
# unexpected fault: shown with its type, and the traceback stays in the log above.
_PLAIN = {
    "TeacherError",
    "TeacherFatalError",
    "BatchUnsupported",  # the Batch API's (teachers/batch_api.py), subclasses of the two above
    "BatchPending",
    "BatchCancelled",
    "TeacherNotConfigured",
    "CorpusError",
    "TaskConfigError",
    "SettingError",
    "NoViableStudentError",
    "LocalModelError",
    "WarehouseLockTimeout",
    "TaskDataError",
    "ClusterError",
    "PartError",
    "PostgresError",
}
# A blocking check's step fails with this; the check's own evaluation says what it found.
_CHECK_FAILED = "DagsterAssetCheckFailedError"
MAX_DETAIL_CHARS = 400


def failure_lines(events) -> list[str]:
    """The lines that explain a failed run: per failed step, `asset: cause` (the outermost error written for a
    person, or else the innermost error); per check failed with ERROR severity, what it found (the failed
    expectations with their counts and a few ids, indented under `asset: check NAME failed`)."""
    lines = []
    for event in events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            lines.extend(_check_lines(event.asset_check_evaluation_data))
            continue
        if not getattr(event, "is_step_failure", False):
            continue
        error = event.step_failure_data.error
        while error is not None and error.cls_name not in _PLAIN and error.cause is not None:
            error = error.cause
        if error is None or error.cls_name == _CHECK_FAILED:
            continue
        text = (error.message or error.cls_name).strip()
        head, _, rest = text.partition(": ")
        if head.endswith(error.cls_name) and rest:  # "package.module.Class: message": drop the path
            text = rest if error.cls_name in _PLAIN else f"{error.cls_name}: {rest}"
        lines.append(
            f"{event.step_key.replace('__', '/')}: {text.splitlines()[0]}"
        )  # the asset key, as the UI shows it
    return list(dict.fromkeys(lines))


def _check_lines(evaluation) -> list[str]:
    from dagster import AssetCheckSeverity

    if evaluation.passed or evaluation.severity != AssetCheckSeverity.ERROR:
        return []
    meta = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
    found = meta.get("failed_expectations") or [meta[k] for k in ("error", "failures") if meta.get(k)]
    blocking = " (blocking: what depends on it did not run)" if evaluation.blocking else ""
    head = f"{evaluation.asset_key.to_user_string()}: check {evaluation.check_name} failed{blocking}"
    return [head + (":" if found else ""), *(f"    {_cut(str(detail))}" for detail in found)]


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"
