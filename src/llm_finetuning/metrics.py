"""Classification metrics with 95% bootstrap confidence intervals: the project's one
metrics module.

Every classifier this project scores (the fine-tuned model, the baselines, the Azure
OpenAI deployment) is scored the same way: it produces a *predictions frame*
(:mod:`llm_finetuning.predictions`, the contract) and hands it to
:func:`score_predictions`.

How invalid answers (``predicted_label == -1``) are scored:

* They count as **wrong**: accuracy counts them as errors, and each one is a false
  negative for its true class (lowering that class's recall and F1). They are nobody's
  false positive, so precision is computed over the valid answers only.
* They are reported on their own: ``n_invalid_predictions``, ``invalid_prediction_rate``
  and ``confusion_matrix.invalid_by_true_label``.
* Their probabilities must be missing (NaN). Probability-based metrics (ROC-AUC,
  log-loss, expected calibration error) are computed **only over the rows that have
  probabilities**; ``n_examples_with_probabilities`` says how many. They are skipped, with
  the reason in ``skipped``, when the frame has no probability columns (a model that
  yields labels only). A valid prediction without probabilities, a partly missing row
  and probabilities outside ``[0, 1]`` or not summing to 1 are errors.

Confidence intervals are percentile bootstrap intervals: the test rows are resampled with
replacement ``n_bootstrap`` times and every metric is recomputed on each resample. Point
estimates come from :mod:`sklearn.metrics`; the resampled confusion-matrix metrics come
from the resampled confusion matrix (the same definitions, vectorised, and checked
against scikit-learn in the tests).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_finetuning.predictions import (
    INVALID_LABEL,
    LABEL,
    PREDICTED_LABEL,
    ROW_ID,
    PredictionsError,
    check_label_names,
    has_probabilities,
    probability_columns,
    shown,
    validate_predictions,
)

# scikit-learn loads in the scoring functions, not with this module: the pipelines'
# node modules import it, and building the pipelines stays fast.

_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)
_PROBABILITY_METRICS = ("roc_auc", "log_loss", "expected_calibration_error")

# --- metric definitions -----------------------------------------------------------


def _resamples(n_examples: int, n_bootstrap: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of each bootstrap resample; the same seed yields the same resamples.

    Generated one at a time: 1,000 resamples of 25,000 rows would hold 200 MB at once.
    """
    rng = np.random.default_rng(seed)
    for _ in range(n_bootstrap):
        yield rng.integers(0, n_examples, n_examples)


def _interval(
    value: float, resampled: np.ndarray, confidence_level: float
) -> dict[str, float | None]:
    """A point estimate with the percentile bootstrap interval of ``resampled``."""
    resampled = resampled[~np.isnan(resampled)]
    if resampled.size == 0:
        low = high = None
    else:
        tail = (1 - confidence_level) / 2
        low, high = (float(q) for q in np.quantile(resampled, [tail, 1 - tail]))
    return {"value": float(value), "ci_low": low, "ci_high": high}


def _label_metrics_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, per-class precision/recall/F1 and their macro means from confusion counts.

    ``counts`` has shape ``(..., K, K + 1)``: true class by predicted class, the last
    column counting invalid answers. Zero divisions give 0, as scikit-learn's
    ``zero_division=0``.
    """
    n_classes = counts.shape[-2]
    valid = counts[..., :n_classes]
    true_positives = np.diagonal(valid, axis1=-2, axis2=-1)
    predicted = valid.sum(axis=-2)
    actual = counts.sum(axis=-1)
    total = actual.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positives / predicted, 0.0)
        recall = np.where(actual > 0, true_positives / actual, 0.0)
        denominator = precision + recall
        f1 = np.where(denominator > 0, 2 * precision * recall / denominator, 0.0)
        accuracy = np.where(total > 0, true_positives.sum(axis=-1) / total, np.nan)
    return {
        "accuracy": accuracy,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "precision_macro": precision.mean(axis=-1),
        "recall_macro": recall.mean(axis=-1),
        "f1_macro": f1.mean(axis=-1),
    }


def _calibration_bins(
    confidence: np.ndarray,
    correct: np.ndarray,
    n_bins: int,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: weight, summed confidence and summed correctness."""
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    weights = np.ones_like(confidence) if weights is None else weights
    count = np.bincount(bins, weights=weights, minlength=n_bins)
    confidence_sum = np.bincount(bins, weights=weights * confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=weights * correct, minlength=n_bins)
    return count, confidence_sum, correct_sum


def _expected_calibration_error(
    confidence: np.ndarray,
    correct: np.ndarray,
    n_bins: int,
    weights: np.ndarray | None = None,
) -> float:
    """Sum over bins of (bin share) x |accuracy - mean confidence| (top-label)."""
    count, confidence_sum, correct_sum = _calibration_bins(
        confidence, correct, n_bins, weights
    )
    total = count.sum()
    return (
        float(np.abs(correct_sum - confidence_sum).sum() / total) if total else math.nan
    )


def calibration_table(
    predictions: pd.DataFrame, label_names: Sequence[str], *, n_bins: int = 10
) -> pd.DataFrame:
    """Top-label reliability table: per confidence bin, count, mean confidence, accuracy.

    Confidence is the probability of the predicted class; rows without probabilities
    (invalid answers) are left out. Empty bins are dropped.
    """
    validate_predictions(predictions, label_names, name="predictions")
    if not has_probabilities(predictions):
        raise PredictionsError("predictions have no probability columns to calibrate")
    probabilities, labels, _ = _probability_rows(predictions, label_names)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    count, confidence_sum, correct_sum = _calibration_bins(confidence, correct, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)
    occupied = count > 0
    return pd.DataFrame(
        {
            "bin_low": edges[:-1][occupied],
            "bin_high": edges[1:][occupied],
            "count": count[occupied].astype(np.int64),
            "mean_confidence": confidence_sum[occupied] / count[occupied],
            "accuracy": correct_sum[occupied] / count[occupied],
        }
    )


def _probability_rows(
    predictions: pd.DataFrame, label_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities and labels of the rows that have probabilities, and their mask.

    Rows are renormalised to sum to exactly 1: validation allows float32 rounding, but
    scikit-learn's log_loss rejects sums off by more than a few float64 eps.
    """
    probabilities = predictions[probability_columns(label_names)].to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    keep = ~np.isnan(probabilities).any(axis=1)
    labels = predictions[LABEL].to_numpy(dtype=np.int64)
    kept = probabilities[keep]
    return kept / kept.sum(axis=1, keepdims=True), labels[keep], keep


def _roc_auc(labels: np.ndarray, probabilities: np.ndarray, weights=None) -> float:
    """Binary: AUC of the class-1 probability. More classes: macro one-vs-rest AUC."""
    from sklearn.metrics import roc_auc_score

    n_classes = probabilities.shape[1]
    if n_classes == 2:
        return float(roc_auc_score(labels, probabilities[:, 1], sample_weight=weights))
    return float(
        roc_auc_score(
            labels,
            probabilities,
            multi_class="ovr",
            average="macro",
            labels=list(range(n_classes)),
            sample_weight=weights,
        )
    )


def score_predictions(
    predictions: pd.DataFrame,
    label_names: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    confidence_level: float = 0.95,
    calibration_bins: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a predictions frame: metrics with bootstrap confidence intervals, as a JSON-able dict.

    Args:
        predictions: A frame in the ``test_predictions`` schema
            (:mod:`llm_finetuning.predictions`).
        label_names: Class names; index = class id.
        n_bootstrap: Number of bootstrap resamples (at least 1).
        confidence_level: Coverage of the intervals, e.g. 0.95.
        calibration_bins: Equal-width confidence bins of the expected calibration error.
        seed: Seed of the resampling, so a report can be reproduced exactly.

    Returns:
        ``metrics`` (accuracy, precision/recall/F1 macro, ROC-AUC, log-loss, expected
        calibration error; each ``{"value", "ci_low", "ci_high"}``), ``per_class``
        (precision, recall, F1 with intervals, and support), ``confusion_matrix``
        (counts, invalid answers per true class, row-normalised rates with intervals),
        counts of examples, invalid answers and rows with probabilities, the bootstrap
        settings, and ``skipped`` (metric -> reason) for metrics that could not be
        computed.
    """
    names = check_label_names(label_names)
    validate_predictions(predictions, names)
    _check_settings(n_bootstrap, confidence_level, calibration_bins)
    labels = predictions[LABEL].to_numpy(dtype=np.int64)
    predicted = predictions[PREDICTED_LABEL].to_numpy(dtype=np.int64)
    n_examples = len(labels)
    invalid = predicted == INVALID_LABEL

    counts = _confusion_counts(labels, predicted, len(names))
    resampled_counts = _resampled_confusion_counts(
        labels, predicted, len(names), _resamples(n_examples, n_bootstrap, seed)
    )
    report_metrics, per_class = _label_metrics(
        labels, predicted, names, resampled_counts, confidence_level
    )
    skipped: dict[str, str] = dict.fromkeys(
        _PROBABILITY_METRICS, "no probability columns: the classifier gave labels only"
    )
    n_with_probabilities = 0
    if has_probabilities(predictions):
        probability_metrics, skipped, n_with_probabilities = _probability_metrics(
            predictions,
            names,
            _resamples(n_examples, n_bootstrap, seed),
            confidence_level=confidence_level,
            calibration_bins=calibration_bins,
        )
        report_metrics.update(probability_metrics)

    return {
        "label_names": names,
        "n_examples": n_examples,
        "n_invalid_predictions": int(invalid.sum()),
        "invalid_prediction_rate": float(invalid.mean()),
        "n_examples_with_probabilities": n_with_probabilities,
        "bootstrap": {
            "method": "percentile",
            "n_resamples": n_bootstrap,
            "confidence_level": confidence_level,
            "seed": seed,
        },
        "metrics": report_metrics,
        "per_class": per_class,
        "confusion_matrix": _confusion_report(
            counts, resampled_counts, names, confidence_level
        ),
        "skipped": skipped,
    }


def _check_settings(
    n_bootstrap: int, confidence_level: float, calibration_bins: int
) -> None:
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, not {n_bootstrap}")
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1), not {confidence_level}")
    if calibration_bins < 1:
        raise ValueError(f"calibration_bins must be at least 1, not {calibration_bins}")


def _confusion_counts(
    labels: np.ndarray, predicted: np.ndarray, n_classes: int
) -> np.ndarray:
    """Counts by true class (rows) and predicted class, invalid answers last column."""
    from sklearn.metrics import confusion_matrix

    class_ids = [*range(n_classes), INVALID_LABEL]
    return confusion_matrix(labels, predicted, labels=class_ids)[:n_classes, :]


def _resampled_confusion_counts(
    labels: np.ndarray,
    predicted: np.ndarray,
    n_classes: int,
    resamples: Iterator[np.ndarray],
) -> np.ndarray:
    """One confusion matrix per resample (``n_bootstrap, K, K + 1``): a bincount each."""
    predicted_column = np.where(predicted == INVALID_LABEL, n_classes, predicted)
    cells = labels * (n_classes + 1) + predicted_column
    stacked = np.stack(
        [
            np.bincount(cells[idx], minlength=n_classes * (n_classes + 1))
            for idx in resamples
        ]
    )
    return stacked.reshape(-1, n_classes, n_classes + 1)


def _label_metrics(
    labels: np.ndarray,
    predicted: np.ndarray,
    names: list[str],
    resampled_counts: np.ndarray,
    confidence_level: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Accuracy and macro precision/recall/F1, and the per-class ones, with intervals.

    Point estimates come from scikit-learn. Invalid answers (-1) are not among the
    class ids, so they are false negatives of their true class and nobody's false
    positive.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(names))), zero_division=0.0
    )
    resampled = _label_metrics_from_counts(resampled_counts)
    accuracy = accuracy_score(labels, predicted)
    overall = {
        "accuracy": _interval(accuracy, resampled["accuracy"], confidence_level),
        "precision_macro": _interval(
            precision.mean(), resampled["precision_macro"], confidence_level
        ),
        "recall_macro": _interval(
            recall.mean(), resampled["recall_macro"], confidence_level
        ),
        "f1_macro": _interval(f1.mean(), resampled["f1_macro"], confidence_level),
    }
    per_class = {
        name: {
            "precision": _interval(
                precision[k], resampled["precision"][:, k], confidence_level
            ),
            "recall": _interval(recall[k], resampled["recall"][:, k], confidence_level),
            "f1": _interval(f1[k], resampled["f1"][:, k], confidence_level),
            "support": int(support[k]),
        }
        for k, name in enumerate(names)
    }
    return overall, per_class


def _confusion_report(
    counts: np.ndarray,
    resampled_counts: np.ndarray,
    names: list[str],
    confidence_level: float,
) -> dict[str, Any]:
    """Counts, invalid answers per true class, and row-normalised rates with intervals."""
    n_classes = len(names)
    row_totals = counts.sum(axis=1, keepdims=True)
    resampled_totals = resampled_counts.sum(axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(row_totals > 0, counts[:, :n_classes] / row_totals, np.nan)
        resampled_rates = np.where(
            resampled_totals > 0,
            resampled_counts[..., :n_classes] / resampled_totals,
            np.nan,
        )
    tail = (1 - confidence_level) / 2
    with warnings.catch_warnings():
        # A class absent from every resample has no rates: NaN, reported as null.
        warnings.simplefilter("ignore", RuntimeWarning)
        rate_low = np.nanquantile(resampled_rates, tail, axis=0)
        rate_high = np.nanquantile(resampled_rates, 1 - tail, axis=0)
    return {
        "labels": names,
        "counts": counts[:, :n_classes].tolist(),
        "invalid_by_true_label": counts[:, n_classes].tolist(),
        "rates": {
            "value": _nan_to_none(rates),
            "ci_low": _nan_to_none(rate_low),
            "ci_high": _nan_to_none(rate_high),
        },
    }


def _probability_metrics(
    predictions: pd.DataFrame,
    names: list[str],
    resample_indices: Iterator[np.ndarray],
    *,
    confidence_level: float,
    calibration_bins: int,
) -> tuple[dict[str, Any], dict[str, str], int]:
    """Log-loss, expected calibration error and ROC-AUC over the rows with probabilities.

    Every resample reweights those rows by how often the resample drew them; given the
    same resamples as the label metrics, all intervals come from the same resamples.
    """
    from sklearn.metrics import log_loss

    n_examples = len(predictions)
    class_ids = list(range(len(names)))
    probabilities, labels, keep = _probability_rows(predictions, names)
    n_with_probabilities = int(keep.sum())
    if n_with_probabilities == 0:
        return {}, dict.fromkeys(_PROBABILITY_METRICS, "no row has probabilities"), 0
    row_index = np.flatnonzero(keep)
    p_true = probabilities[np.arange(len(labels)), labels]
    row_log_loss = -np.log(np.clip(p_true, _LOG_LOSS_EPS, 1.0))
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    auc_defined = len(np.unique(labels)) == len(names)

    resampled: dict[str, list[float]] = {"log_loss": [], "ece": [], "roc_auc": []}
    for idx in resample_indices:
        weights = np.bincount(idx, minlength=n_examples)[row_index]
        if not weights.any():  # the resample drew only invalid answers
            for values in resampled.values():
                values.append(math.nan)
            continue
        resampled["log_loss"].append(float(np.average(row_log_loss, weights=weights)))
        resampled["ece"].append(
            _expected_calibration_error(confidence, correct, calibration_bins, weights)
        )
        if auc_defined:
            resampled["roc_auc"].append(
                _resampled_roc_auc(labels, probabilities, weights)
            )

    metrics: dict[str, Any] = {
        "log_loss": _interval(
            log_loss(labels, probabilities, labels=class_ids),
            np.array(resampled["log_loss"]),
            confidence_level,
        ),
        "expected_calibration_error": _interval(
            _expected_calibration_error(confidence, correct, calibration_bins),
            np.array(resampled["ece"]),
            confidence_level,
        ),
    }
    skipped: dict[str, str] = {}
    if auc_defined:
        metrics["roc_auc"] = _interval(
            _roc_auc(labels, probabilities),
            np.array(resampled["roc_auc"]),
            confidence_level,
        )
    else:
        skipped["roc_auc"] = (
            "undefined: not every class occurs among the rows with probabilities"
        )
    return metrics, skipped, n_with_probabilities


def _resampled_roc_auc(
    labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray
) -> float:
    """ROC-AUC of one resample, NaN when a class is missing from it."""
    present = weights > 0
    if len(np.unique(labels[present])) < probabilities.shape[1]:
        return math.nan
    return _roc_auc(labels[present], probabilities[present], weights[present])


def _nan_to_none(values: np.ndarray) -> list:
    """Nested lists with NaN as None: JSON has no NaN."""
    return [[None if math.isnan(v) else float(v) for v in row] for row in values]


def paired_bootstrap_difference(
    predictions_a: pd.DataFrame,
    predictions_b: pd.DataFrame,
    label_names: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float | None]]:
    """Accuracy and macro-F1 of ``a`` minus those of ``b`` on the same rows, with paired
    bootstrap intervals (both classifiers are scored on the same resamples, so the
    interval reflects the difference, not two independent uncertainties).

    Both frames must hold the same ``row_id`` set with the same true labels.
    """
    names = check_label_names(label_names)
    validate_predictions(predictions_a, names, name="predictions_a")
    validate_predictions(predictions_b, names, name="predictions_b")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, not {n_bootstrap}")
    a = predictions_a.sort_values(ROW_ID)
    b = predictions_b.sort_values(ROW_ID)
    ids_a = a[ROW_ID].to_numpy(dtype=np.int64)
    ids_b = b[ROW_ID].to_numpy(dtype=np.int64)
    if len(ids_a) != len(ids_b) or not np.array_equal(ids_a, ids_b):
        only_a = np.setdiff1d(ids_a, ids_b)
        only_b = np.setdiff1d(ids_b, ids_a)
        raise PredictionsError(
            "the two predictions frames cover different rows: row_id only in the first "
            f"{shown(only_a)}, only in the second {shown(only_b)}"
        )
    labels = a[LABEL].to_numpy(dtype=np.int64)
    disagree = labels != b[LABEL].to_numpy(dtype=np.int64)
    if disagree.any():
        raise PredictionsError(
            f"the two predictions frames disagree on the true label of row_id {shown(ids_a[disagree])}"
        )
    n_classes = len(names)
    n_examples = len(labels)

    def cells(frame: pd.DataFrame) -> np.ndarray:
        predicted = frame[PREDICTED_LABEL].to_numpy(dtype=np.int64)
        return labels * (n_classes + 1) + np.where(
            predicted == INVALID_LABEL, n_classes, predicted
        )

    cells_a, cells_b = cells(a), cells(b)
    size = n_classes * (n_classes + 1)
    shape = (n_classes, n_classes + 1)

    def metrics(cells_x: np.ndarray) -> dict[str, np.ndarray]:
        return _label_metrics_from_counts(
            np.bincount(cells_x, minlength=size).reshape(shape)
        )

    point_a, point_b = metrics(cells_a), metrics(cells_b)
    rng = np.random.default_rng(seed)
    differences = {"accuracy": [], "f1_macro": []}
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n_examples, n_examples)
        ra, rb = metrics(cells_a[idx]), metrics(cells_b[idx])
        for key, values in differences.items():
            values.append(float(ra[key] - rb[key]))
    return {
        key: _interval(
            float(point_a[key] - point_b[key]), np.array(values), confidence_level
        )
        for key, values in differences.items()
    }


_METRIC_KEY_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. /]")


def format_interval(entry: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``0.861 [0.845, 0.876]`` from a metric entry (``n/a`` when absent)."""
    if not entry or entry.get("value") is None:
        return "n/a"
    value = f"{entry['value']:.{digits}f}"
    if entry.get("ci_low") is None:
        return value
    return f"{value} [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"


def flatten_metrics(report: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Scalar metrics of a :func:`score_predictions` report, flat, for MLflow.

    Keys look like ``<prefix>.accuracy``, ``<prefix>.accuracy.ci_low`` and
    ``<prefix>.per_class.<label>.f1``; characters MLflow rejects become ``_``.
    """
    flat: dict[str, float] = {}

    def add(key: str, value: Any) -> None:
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            flat[_METRIC_KEY_UNSAFE.sub("_", f"{prefix}.{key}")] = float(value)

    for metric, interval in report["metrics"].items():
        add(metric, interval["value"])
        add(f"{metric}.ci_low", interval["ci_low"])
        add(f"{metric}.ci_high", interval["ci_high"])
    for label, entry in report["per_class"].items():
        for metric in ("precision", "recall", "f1"):
            add(f"per_class.{label}.{metric}", entry[metric]["value"])
    add("invalid_prediction_rate", report["invalid_prediction_rate"])
    add("n_examples", report["n_examples"])
    return flat
