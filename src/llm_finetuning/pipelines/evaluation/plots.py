"""Evaluation figures, drawn on bare ``matplotlib.figure.Figure`` objects.

No pyplot: figures built this way need no GUI backend and keep no global state, so the
nodes stay pure; ``matplotlib.MatplotlibDataset`` saves them as PNG, which kedro-viz
previews and MLflow shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

from llm_finetuning.metrics import calibration_table
from llm_finetuning.predictions import (
    LABEL,
    has_probabilities,
    probability_column,
)

_FIGSIZE = (6.4, 4.8)


def _message_figure(title: str, message: str) -> Figure:
    """A figure that says why the plot could not be drawn (never an empty image)."""
    figure = Figure(figsize=_FIGSIZE)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return figure


def confusion_matrix_figure(metrics: Mapping[str, Any], title: str) -> Figure:
    """Counts of true (rows) by predicted (columns) class from a metrics report.

    Cells show the count and the row share; invalid answers are counted in the title.
    """
    matrix = metrics["confusion_matrix"]
    counts = np.asarray(matrix["counts"])
    names = matrix["labels"]
    figure = Figure(
        figsize=(max(6.0, 1.2 * len(names) + 3.5), max(4.8, 1.1 * len(names) + 2))
    )
    axes = figure.add_subplot()
    display = ConfusionMatrixDisplay(confusion_matrix=counts, display_labels=names)
    display.plot(ax=axes, cmap="Blues", colorbar=True, values_format="d")
    rates = matrix["rates"]["value"]
    for (i, j), text in np.ndenumerate(display.text_):
        rate = rates[i][j]
        if rate is not None:
            text.set_text(f"{counts[i, j]:d}\n({rate:.1%})")
    invalid = int(metrics.get("n_invalid_predictions", 0))
    subtitle = f"; {invalid} invalid answer(s) not shown" if invalid else ""
    axes.set_title(f"{title}\n(n = {metrics['n_examples']}{subtitle})")
    figure.tight_layout()
    return figure


def roc_curve_figure(
    predictions: pd.DataFrame, label_names: Sequence[str], title: str
) -> Figure:
    """ROC curve of the positive class (two classes) or one-vs-rest per class."""
    if not has_probabilities(predictions):
        return _message_figure(title, "No class probabilities: no ROC curve.")
    scored = predictions.dropna(subset=[probability_column(label_names[0])])
    labels = scored[LABEL].to_numpy()
    if len(np.unique(labels)) < 2:
        return _message_figure(title, "Only one class in the test set: no ROC curve.")
    figure = Figure(figsize=_FIGSIZE)
    axes = figure.add_subplot()
    classes = [1] if len(label_names) == 2 else range(len(label_names))
    for k in classes:
        if not (labels == k).any():
            continue
        RocCurveDisplay.from_predictions(
            labels == k,
            scored[probability_column(label_names[k])].to_numpy(),
            name=f"{label_names[k]}" + (" vs rest" if len(label_names) > 2 else ""),
            ax=axes,
            plot_chance_level=k == classes[-1],
        )
    axes.set_title(f"{title} (n = {len(scored)})")
    figure.tight_layout()
    return figure


def reliability_figure(
    predictions: pd.DataFrame, label_names: Sequence[str], n_bins: int, title: str
) -> Figure:
    """Top-label reliability diagram: accuracy against confidence per bin, with the
    share of reviews per bin underneath. A calibrated model follows the diagonal."""
    if not has_probabilities(predictions):
        return _message_figure(title, "No class probabilities: no reliability diagram.")
    table = calibration_table(predictions, label_names, n_bins=n_bins)
    figure = Figure(figsize=(6.4, 6.0))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = 1 / n_bins
    top.bar(
        table["bin_low"],
        table["accuracy"],
        width=width,
        align="edge",
        edgecolor="black",
        label="accuracy in bin",
    )
    top.plot(
        table["mean_confidence"],
        table["accuracy"],
        "o",
        color="tab:red",
        label="mean confidence",
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(f"{title} (n = {int(table['count'].sum())})")
    bottom.bar(
        table["bin_low"],
        table["count"] / table["count"].sum(),
        width=width,
        align="edge",
        edgecolor="black",
    )
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.set_ylabel("share")
    figure.tight_layout()
    return figure


def accuracy_by_length_figure(table: pd.DataFrame, title: str) -> Figure:
    """Accuracy per review-length bucket with 95% Wilson intervals."""
    figure = Figure(figsize=_FIGSIZE)
    axes = figure.add_subplot()
    positions = np.arange(len(table))
    accuracy = table["accuracy"].to_numpy()
    errors = np.vstack(
        [accuracy - table["ci_low"].to_numpy(), table["ci_high"].to_numpy() - accuracy]
    )
    axes.bar(positions, accuracy, yerr=errors, capsize=4, color="tab:blue")
    axes.set_xticks(
        positions,
        [f"{b}\n(n={n})" for b, n in zip(table["bucket"], table["count"], strict=True)],
    )
    axes.set_xlabel("review length in words")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(title)
    figure.tight_layout()
    return figure
