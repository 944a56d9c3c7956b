"""Paper-style figures: accuracy vs teacher labels per candidate, with fitted curves and forecasts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files and metadata, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scalellm_dagster.core.learning_curve import fit_learning_curve  # noqa: E402


def learning_curves_figure(scores: pd.DataFrame, chosen: str, title: str, forecast_to: int | None = None):
    ok = scores[scores["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, group in ok.groupby("candidate", sort=False):
        group = group.sort_values("sample_size")
        width = 2.5 if name == chosen else 1.2
        line = ax.errorbar(group["sample_size"], group["cv_accuracy"], yerr=group["cv_std"], marker="o",
                           lw=width, capsize=2, label=name + (" (chosen)" if name == chosen else ""))
        curve = fit_learning_curve(group["sample_size"], group["cv_accuracy"])
        if curve is not None:
            top = forecast_to or int(group["sample_size"].max()) * 10
            xs = np.geomspace(group["sample_size"].min(), top, 60)
            ax.plot(xs, np.clip(curve.accuracy_at(xs), 0, 1), ls="--", lw=1, color=line.lines[0].get_color())
    ax.set_xscale("log")
    ax.set_xlabel("teacher-labelled rows (log scale); dashed: fitted power law forecast")
    ax.set_ylabel("cross-validated accuracy vs teacher")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def close(fig) -> None:
    plt.close(fig)


def tradeoff_figure(table: pd.DataFrame, teacher_seconds: float, corpus_rows: int, baseline_seconds: float,
                    title: str):
    """Accuracy vs time to label the whole corpus, per candidate, with the row-by-row teacher as a point."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for row in table.itertuples():
        if not np.isfinite(row.predict_rows_per_second) or row.predict_rows_per_second <= 0:
            continue
        seconds = teacher_seconds + corpus_rows / row.predict_rows_per_second
        ax.scatter(seconds, row.cv_accuracy, s=80 if row.chosen else 40, marker="*" if row.chosen else "o")
        ax.annotate(row.candidate, (seconds, row.cv_accuracy), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    ax.scatter(baseline_seconds, 1.0, marker="s", color="black")
    ax.annotate("teacher on every row\n(extrapolated)", (baseline_seconds, 1.0), fontsize=8, xytext=(-90, -24),
                textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("seconds to label the corpus (teacher sample + student inference; log)")
    ax.set_ylabel("accuracy vs teacher (CV)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig
