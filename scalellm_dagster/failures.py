"""What a failed run says last: the cause and the fix, taken from the step failures, not buried in tracebacks."""

from __future__ import annotations

# Root causes whose message is already written for a person: it is shown as is. Anything else is a bug or an
# unexpected fault: shown with its type, and the traceback stays in the log above.
_PLAIN = {"TeacherError", "TeacherFatalError", "TeacherNotConfigured", "CorpusError", "TaskConfigError",
          "SettingError", "NoViableStudentError", "LocalModelError", "WarehouseLockTimeout"}


def failure_lines(events) -> list[str]:
    """One line per failed step: `asset: cause`, the cause being the outermost error written for a person (it says
    the most: what failed and what was kept), or else the innermost error of the failure."""
    lines = []
    for event in events:
        if not getattr(event, "is_step_failure", False):
            continue
        error = event.step_failure_data.error
        while error is not None and error.cls_name not in _PLAIN and error.cause is not None:
            error = error.cause
        if error is None:
            continue
        text = (error.message or error.cls_name).strip()
        head, _, rest = text.partition(": ")
        if head.endswith(error.cls_name) and rest:  # "package.module.Class: message": drop the path
            text = rest if error.cls_name in _PLAIN else f"{error.cls_name}: {rest}"
        lines.append(f"{event.step_key.replace('__', '/')}: {text.splitlines()[0]}")  # the asset key, as the UI shows it
    return list(dict.fromkeys(lines))
