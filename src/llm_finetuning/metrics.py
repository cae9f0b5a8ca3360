"""Classification metrics with 95% bootstrap confidence intervals: the project's one
metrics module.

Every classifier this project scores (the fine-tuned model, the baselines, the Azure
OpenAI deployment) is scored the same way: it produces a *predictions frame* in the
``test_predictions`` schema and hands it to :func:`score_predictions`.

Predictions frame (one row per test example):

* ``row_id`` (int, unique): joins the prediction back to ``test_reviews``.
* ``label`` (int, ``0..K-1``): the true class id.
* ``predicted_label`` (int, ``-1..K-1``): the predicted class id, or ``-1``
  (:data:`INVALID_LABEL`) when the classifier gave no usable answer (an unparseable or
  out-of-vocabulary chat completion, for instance).
* ``prob_<label name>`` (float, optional, one per class, in ``label_names`` order): the
  predicted class probabilities. Either all ``K`` columns are present or none.

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

# scikit-learn loads in the scoring functions, not with this module: the pipelines'
# node modules import it, and building the pipelines stays fast.

INVALID_LABEL = -1
ROW_ID = "row_id"
LABEL = "label"
PREDICTED_LABEL = "predicted_label"
PROBABILITY_PREFIX = "prob_"
REQUIRED_COLUMNS = (ROW_ID, LABEL, PREDICTED_LABEL)
# float32 softmax outputs sum to 1 within about 1e-6; leave room for rounded values.
PROBABILITY_SUM_TOLERANCE = 1e-3
# sklearn's log_loss clips probabilities to the dtype's eps; do the same per row.
_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)
_PROBABILITY_METRICS = ("roc_auc", "log_loss", "expected_calibration_error")
_SHOWN_ROWS = 5


class PredictionsError(ValueError):
    """A predictions frame (or the inputs used to build one) is not valid."""


def probability_column(label_name: str) -> str:
    """Name of the probability column of class ``label_name``: ``prob_<label name>``."""
    return f"{PROBABILITY_PREFIX}{label_name}"


def probability_columns(label_names: Sequence[str]) -> list[str]:
    """Probability column names, in label-id order."""
    return [probability_column(name) for name in label_names]


def has_probabilities(predictions: pd.DataFrame) -> bool:
    """Whether ``predictions`` carries ``prob_<label name>`` columns."""
    return any(str(c).startswith(PROBABILITY_PREFIX) for c in predictions.columns)


def _show(values: Any) -> str:
    """At most a few values of ``values`` for an error message."""
    values = list(values)
    shown = ", ".join(
        repr(v.item() if hasattr(v, "item") else v) for v in values[:_SHOWN_ROWS]
    )
    more = f" and {len(values) - _SHOWN_ROWS} more" if len(values) > _SHOWN_ROWS else ""
    return f"[{shown}{more}]"


def _check_label_names(label_names: Sequence[str]) -> list[str]:
    names = [str(name) for name in label_names]
    if len(names) < 2:
        raise PredictionsError(f"label_names needs at least two classes, got {names}")
    if len(set(names)) != len(names):
        raise PredictionsError(f"label_names has duplicates: {names}")
    return names


def _integer_column(frame: pd.DataFrame, column: str, name: str) -> np.ndarray:
    """``frame[column]`` as int64, rejecting missing and non-integer values."""
    values = frame[column]
    missing = values.isna().to_numpy()
    if missing.any():
        where = (
            f"row position {_show(np.flatnonzero(missing))}"
            if column == ROW_ID
            else f"row_id {_show(frame.loc[missing, ROW_ID])}"
        )
        raise PredictionsError(
            f"{name}: column '{column}' has {int(missing.sum())} missing value(s) "
            f"({where})"
            + (
                "; use -1 for an invalid or unparseable answer"
                if column == PREDICTED_LABEL
                else ""
            )
        )
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        raise PredictionsError(
            f"{name}: column '{column}' must hold integer class ids, not {values.dtype}"
        )
    as_float = values.to_numpy(dtype=np.float64)
    fractional = as_float != np.round(as_float)
    if fractional.any():
        raise PredictionsError(
            f"{name}: column '{column}' must hold integers; found {_show(as_float[fractional])}"
        )
    return as_float.astype(np.int64)


def validate_predictions(
    predictions: pd.DataFrame, label_names: Sequence[str], *, name: str = "predictions"
) -> None:
    """Raise :class:`PredictionsError` naming the column and rows if ``predictions`` is
    not a valid predictions frame for ``label_names`` (see the module docstring)."""
    names = _check_label_names(label_names)
    if not isinstance(predictions, pd.DataFrame):
        raise PredictionsError(
            f"{name} must be a pandas DataFrame, not {type(predictions)}"
        )
    missing_columns = [c for c in REQUIRED_COLUMNS if c not in predictions.columns]
    if missing_columns:
        raise PredictionsError(
            f"{name} lacks column(s) {missing_columns}; it has {list(predictions.columns)}"
        )
    if predictions.empty:
        raise PredictionsError(f"{name} has no rows")
    row_ids, predicted = _validate_label_columns(predictions, names, name)
    if has_probabilities(predictions):
        _validate_probabilities(predictions, names, name, row_ids, predicted)


def _validate_label_columns(
    predictions: pd.DataFrame, names: list[str], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check ``row_id``, ``label`` and ``predicted_label``; return row ids and predictions."""
    n_classes = len(names)
    row_ids = _integer_column(predictions, ROW_ID, name)
    duplicated = pd.Series(row_ids).duplicated(keep=False).to_numpy()
    if duplicated.any():
        raise PredictionsError(
            f"{name}: row_id must be unique; repeated: {_show(np.unique(row_ids[duplicated]))}"
        )
    labels = _integer_column(predictions, LABEL, name)
    unknown = (labels < 0) | (labels >= n_classes)
    if unknown.any():
        raise PredictionsError(
            f"{name}: column 'label' has {int(unknown.sum())} unknown class id(s) "
            f"{_show(np.unique(labels[unknown]))} (row_id {_show(row_ids[unknown])}); "
            f"label_names {names} allow 0..{n_classes - 1}"
        )
    predicted = _integer_column(predictions, PREDICTED_LABEL, name)
    unknown = (predicted < INVALID_LABEL) | (predicted >= n_classes)
    if unknown.any():
        raise PredictionsError(
            f"{name}: column 'predicted_label' has {int(unknown.sum())} unknown class "
            f"id(s) {_show(np.unique(predicted[unknown]))} (row_id "
            f"{_show(row_ids[unknown])}); allowed: 0..{n_classes - 1}, or -1 for an "
            "invalid answer"
        )
    return row_ids, predicted


def _validate_probabilities(
    predictions: pd.DataFrame,
    names: list[str],
    name: str,
    row_ids: np.ndarray,
    predicted: np.ndarray,
) -> None:
    """Check the ``prob_<label name>`` columns (module docstring for the rules)."""
    expected = probability_columns(names)
    present = [c for c in predictions.columns if str(c).startswith(PROBABILITY_PREFIX)]
    stray = [c for c in present if c not in expected]
    absent = [c for c in expected if c not in predictions.columns]
    if stray or absent:
        raise PredictionsError(
            f"{name}: probability columns must be exactly {expected} (one per label "
            f"name); missing {absent}, unexpected {stray}"
        )
    for column in expected:
        dtype = predictions[column].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(
            dtype
        ):
            raise PredictionsError(
                f"{name}: column '{column}' must be numeric, not {dtype}"
            )
    probabilities = predictions[expected].to_numpy(dtype=np.float64, na_value=np.nan)
    nan = np.isnan(probabilities)
    row_missing = nan.all(axis=1)
    problems = {
        "have some probabilities missing (NaN) but not all": nan.any(axis=1)
        & ~row_missing,
        "are valid predictions with NaN probabilities (only invalid answers, "
        "predicted_label -1, may lack them)": row_missing
        & (predicted != INVALID_LABEL),
        "are invalid answers (predicted_label -1) carrying probabilities (leave them "
        "NaN)": ~row_missing & (predicted == INVALID_LABEL),
    }
    with np.errstate(invalid="ignore"):
        scored = np.where(nan, 0.5, probabilities)
        problems["have probabilities outside [0, 1] or infinite"] = ~row_missing & (
            ~np.isfinite(scored) | (scored < 0) | (scored > 1)
        ).any(axis=1)
        problems[
            f"have probabilities that do not sum to 1 (tolerance {PROBABILITY_SUM_TOLERANCE})"
        ] = ~row_missing & (
            np.abs(probabilities.sum(axis=1) - 1) > PROBABILITY_SUM_TOLERANCE
        )
    for problem, rows in problems.items():
        if rows.any():
            raise PredictionsError(
                f"{name}: {int(rows.sum())} row(s) {problem}: row_id {_show(row_ids[rows])}"
            )


def predictions_frame(
    row_ids: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
    *,
    probabilities: np.ndarray | None = None,
    predicted_labels: Sequence[int] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Build and validate a predictions frame, sorted by ``row_id``.

    ``predicted_labels`` defaults to the most probable class of ``probabilities``; give
    one of the two. Mismatched lengths raise :class:`PredictionsError`.
    """
    names = _check_label_names(label_names)
    if probabilities is None and predicted_labels is None:
        raise PredictionsError("give probabilities, predicted_labels or both")
    lengths = {"row_ids": len(row_ids), "labels": len(labels)}
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[1] != len(names):
            raise PredictionsError(
                f"probabilities must have shape (n, {len(names)}) for label_names "
                f"{names}, not {probabilities.shape}"
            )
        lengths["probabilities"] = len(probabilities)
    if predicted_labels is not None:
        lengths["predicted_labels"] = len(predicted_labels)
    if len(set(lengths.values())) != 1:
        raise PredictionsError(f"mismatched lengths: {lengths}")
    if predicted_labels is None:
        assert probabilities is not None
        predicted_labels = probabilities.argmax(axis=1)
    frame = pd.DataFrame(
        {
            ROW_ID: np.asarray(row_ids, dtype=np.int64),
            LABEL: np.asarray(labels, dtype=np.int64),
            PREDICTED_LABEL: np.asarray(predicted_labels, dtype=np.int64),
        }
    )
    if probabilities is not None:
        for column, values in zip(
            probability_columns(names), probabilities.T, strict=True
        ):
            frame[column] = values
    frame = frame.sort_values(ROW_ID, kind="stable").reset_index(drop=True)
    validate_predictions(frame, names)
    return frame


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
        predictions: A frame in the ``test_predictions`` schema (module docstring).
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
    names = _check_label_names(label_names)
    validate_predictions(predictions, names)
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, not {n_bootstrap}")
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1), not {confidence_level}")
    if calibration_bins < 1:
        raise ValueError(f"calibration_bins must be at least 1, not {calibration_bins}")

    n_classes = len(names)
    labels = predictions[LABEL].to_numpy(dtype=np.int64)
    predicted = predictions[PREDICTED_LABEL].to_numpy(dtype=np.int64)
    n_examples = len(labels)
    invalid = predicted == INVALID_LABEL
    class_ids = list(range(n_classes))

    # Point estimates: scikit-learn. Invalid answers (-1) are not among `labels`, so
    # they are false negatives of their true class and nobody's false positive.
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    accuracy = accuracy_score(labels, predicted)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=class_ids, zero_division=0.0
    )
    counts = confusion_matrix(labels, predicted, labels=[*class_ids, INVALID_LABEL])
    counts = counts[:n_classes, :]  # no true label is -1

    # Resampled confusion matrices: one bincount per resample over cell ids.
    predicted_column = np.where(invalid, n_classes, predicted)
    cells = labels * (n_classes + 1) + predicted_column
    resampled_counts = np.stack(
        [
            np.bincount(cells[idx], minlength=n_classes * (n_classes + 1))
            for idx in _resamples(n_examples, n_bootstrap, seed)
        ]
    ).reshape(n_bootstrap, n_classes, n_classes + 1)
    resampled = _label_metrics_from_counts(resampled_counts)

    report_metrics: dict[str, Any] = {
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

    skipped: dict[str, str] = {}
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
    else:
        skipped = dict.fromkeys(
            _PROBABILITY_METRICS,
            "no probability columns: the classifier gave labels only",
        )

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
        "confusion_matrix": {
            "labels": names,
            "counts": counts[:, :n_classes].tolist(),
            "invalid_by_true_label": counts[:, n_classes].tolist(),
            "rates": {
                "value": _nan_to_none(rates),
                "ci_low": _nan_to_none(rate_low),
                "ci_high": _nan_to_none(rate_high),
            },
        },
        "skipped": skipped,
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
    names = _check_label_names(label_names)
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
            f"{_show(only_a)}, only in the second {_show(only_b)}"
        )
    labels = a[LABEL].to_numpy(dtype=np.int64)
    disagree = labels != b[LABEL].to_numpy(dtype=np.int64)
    if disagree.any():
        raise PredictionsError(
            f"the two predictions frames disagree on the true label of row_id {_show(ids_a[disagree])}"
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
