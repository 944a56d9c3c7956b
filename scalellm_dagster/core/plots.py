"""Paper-style figures: accuracy vs teacher labels per candidate, with fitted curves and forecasts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files and metadata, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scalellm_dagster.core.learning_curve import FloorPrior, fit_learning_curve  # noqa: E402
from scalellm_dagster.core.students import KNOWN_CANDIDATES  # noqa: E402


def candidate_color(name: str) -> str:
    """One colour per candidate, the same in every plot and every report."""
    order = sorted(KNOWN_CANDIDATES)
    return plt.get_cmap("tab10")(order.index(name) % 10 if name in order else 9)


def learning_curves_figure(
    scores: pd.DataFrame, chosen: str, title: str, forecast_to: int | None = None, floor: FloorPrior | None = None
):
    """Measured accuracy vs teacher labels per candidate (error bars: the folds' spread), and for the chosen
    student and the runner-up the fitted curve's forecast, up to `forecast_to` (the corpus: there are no more rows to
    label). No band around the forecast: the fit's parameter band held the next measured point in 1-5 runs of 10
    where it claimed 68 % (issue #36, BENCHMARKS.md), so it is not drawn as if it were an interval. `floor`: the
    teacher's estimated unlearnable noise, weighed with the points (its ceiling drawn with the estimate's one-sigma
    range)."""
    ok = scores[scores["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(9, 5.4))
    at_max = ok[ok["sample_size"] == ok["sample_size"].max()].sort_values("cv_accuracy", ascending=False)
    forecast_for = [chosen] + [c for c in at_max["candidate"] if c != chosen][:1]
    for name, group in ok.groupby("candidate", sort=False):
        group = group.sort_values("sample_size")
        color = candidate_color(name)
        ax.errorbar(
            group["sample_size"],
            group["cv_accuracy"],
            yerr=group["cv_std"],
            marker="o",
            color=color,
            lw=2.5 if name == chosen else 1.2,
            capsize=2,
            label=name + (" (chosen)" if name == chosen else ""),
        )
        curve = fit_learning_curve(group["sample_size"], group["cv_accuracy"], floor) if name in forecast_for else None
        if curve is not None:
            last = int(group["sample_size"].max())
            top = max(last, min(forecast_to or last * 10, last * 10))
            xs = np.geomspace(last, top, 60) if top > last else np.array([last])
            ax.plot(xs, np.clip(curve.accuracy_at(xs), 0, 1), ls="--", lw=1.5, color=color)
    if floor is not None and floor.mean > 0:
        ax.axhline(
            1 - floor.mean,
            color="black",
            lw=1,
            ls="-.",
            label=f"estimated ceiling: 1 − teacher's unlearnable mistakes ({floor.mean:.1%} ± {floor.sd:.1%})",
        )
        ax.axhspan(1 - floor.mean - floor.sd, 1 - floor.mean + floor.sd, color="black", alpha=0.05, lw=0)
    if forecast_to:
        ax.axvline(forecast_to, color="grey", lw=1, ls=":", label=f"corpus size ({forecast_to:,} rows)")
    ax.set_xscale("log")
    ax.set_xlabel("teacher-labelled rows (log scale); dashed: fitted forecast, a point estimate (no interval)")
    ax.set_ylabel("cross-validated accuracy vs the teacher")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    return fig


def close(fig) -> None:
    plt.close(fig)


def tradeoff_figure(
    table: pd.DataFrame,
    teacher_seconds: float,
    corpus_rows: int,
    baseline_seconds: float,
    title: str,
    teacher_vs_gold: float | None = None,
):
    """Accuracy vs time to label the whole corpus, per candidate (legend, not labels that overlap), with the
    row-by-row teacher's time as a vertical line. Accuracy is against gold on held-out rows where the task has a
    gold column (`accuracy_vs_gold_heldout`; the teacher's own accuracy vs gold drawn as a line), else against the
    teacher (whose accuracy vs itself is 1 by definition, so it is not drawn)."""
    vs_gold = "accuracy_vs_gold_heldout" in table and table["accuracy_vs_gold_heldout"].notna().any()
    column = "accuracy_vs_gold_heldout" if vs_gold else "cv_accuracy"
    fig, ax = plt.subplots(figsize=(9, 5.4))
    for row in table.itertuples():
        accuracy = float(getattr(row, column))
        if (
            not np.isfinite(row.predict_rows_per_second)
            or row.predict_rows_per_second <= 0
            or not np.isfinite(accuracy)
        ):
            continue
        seconds = teacher_seconds + corpus_rows / row.predict_rows_per_second
        ax.scatter(
            seconds,
            accuracy,
            s=180 if row.chosen else 60,
            marker="*" if row.chosen else "o",
            color=candidate_color(row.candidate),
            edgecolor="black" if row.chosen else "none",
            label=f"{row.candidate}" + (" (chosen)" if row.chosen else ""),
            zorder=3,
        )
    ax.axvline(
        baseline_seconds,
        color="black",
        ls="--",
        lw=1.2,
        label=f"teacher on every row: {baseline_seconds:,.0f} s (extrapolated)",
    )
    if vs_gold and teacher_vs_gold is not None:
        ax.axhline(
            teacher_vs_gold,
            color="grey",
            ls=":",
            lw=1.2,
            label=f"the teacher's own accuracy vs gold (on its sample): {teacher_vs_gold:.3f}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("seconds to label the corpus: teacher sample + student inference (log scale)")
    ax.set_ylabel(
        "accuracy vs gold (held-out rows the teacher never saw)"
        if vs_gold
        else "cross-validated accuracy vs the teacher (no gold column)"
    )
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    return fig


def audit_figure(history: pd.DataFrame, title: str):
    """Each refresh's audit: the deployed labels' agreement with the teacher on its new rows, with the audit's 95 %
    interval, against the report's estimate at the time; failed audits in red."""
    judged = history[history["audited"] > 0].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(judged))
    agreement = judged["agreement"].to_numpy(float)
    low, high = judged["ci_low"].to_numpy(float), judged["ci_high"].to_numpy(float)
    failed = (judged["passed"] == False).to_numpy()  # noqa: E712 - nullable booleans
    for mask, color, label in ((~failed, "tab:blue", "audit passed"), (failed, "tab:red", "audit failed")):
        if mask.any():
            ax.errorbar(
                x[mask],
                agreement[mask],
                yerr=[agreement[mask] - low[mask], high[mask] - agreement[mask]],
                fmt="o",
                color=color,
                capsize=4,
                label=label,
            )
    ax.step(
        x,
        judged["estimate"].to_numpy(float),
        where="mid",
        color="black",
        ls="--",
        label="report's estimate (cross-validated agreement)",
    )
    ax.set_xticks(
        x, [f"{str(r)[:8]}\n{n:,} new" for r, n in zip(judged["audit_run_id"], judged["new_rows"])], fontsize=7
    )
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("agreement with the teacher (audited new rows)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return fig
