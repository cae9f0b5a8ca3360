"""The predictions frame: the contract between every classifier and the scoring.

Every classifier this project scores (the fine-tuned model, the baselines, a deployed
model) produces a frame in the ``test_predictions`` schema, checked here and scored by
:func:`llm_finetuning.metrics.score_predictions`.

Predictions frame (one row per test example):

* ``row_id`` (int, unique): joins the prediction back to ``test_reviews``.
* ``label`` (int, ``0..K-1``): the true class id.
* ``predicted_label`` (int, ``-1..K-1``): the predicted class id, or ``-1``
  (:data:`INVALID_LABEL`) when the classifier gave no usable answer (an unparseable or
  out-of-vocabulary chat completion, for instance).
* ``prob_<label name>`` (float, optional, one per class, in ``label_names`` order): the
  predicted class probabilities. Either all ``K`` columns are present or none. An
  invalid answer's probabilities must be missing (NaN); a valid prediction without
  probabilities, a partly missing row and probabilities outside ``[0, 1]`` or not
  summing to 1 are errors.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def shown(values: Any) -> str:
    """At most a few values of ``values`` for an error message."""
    values = list(values)
    text = ", ".join(
        repr(v.item() if hasattr(v, "item") else v) for v in values[:_SHOWN_ROWS]
    )
    more = f" and {len(values) - _SHOWN_ROWS} more" if len(values) > _SHOWN_ROWS else ""
    return f"[{text}{more}]"


def check_label_names(label_names: Sequence[str]) -> list[str]:
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
            f"row position {shown(np.flatnonzero(missing))}"
            if column == ROW_ID
            else f"row_id {shown(frame.loc[missing, ROW_ID])}"
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
            f"{name}: column '{column}' must hold integers; found {shown(as_float[fractional])}"
        )
    return as_float.astype(np.int64)


def validate_predictions(
    predictions: pd.DataFrame, label_names: Sequence[str], *, name: str = "predictions"
) -> None:
    """Raise :class:`PredictionsError` naming the column and rows if ``predictions`` is
    not a valid predictions frame for ``label_names`` (see the module docstring)."""
    names = check_label_names(label_names)
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
            f"{name}: row_id must be unique; repeated: {shown(np.unique(row_ids[duplicated]))}"
        )
    labels = _integer_column(predictions, LABEL, name)
    unknown = (labels < 0) | (labels >= n_classes)
    if unknown.any():
        raise PredictionsError(
            f"{name}: column 'label' has {int(unknown.sum())} unknown class id(s) "
            f"{shown(np.unique(labels[unknown]))} (row_id {shown(row_ids[unknown])}); "
            f"label_names {names} allow 0..{n_classes - 1}"
        )
    predicted = _integer_column(predictions, PREDICTED_LABEL, name)
    unknown = (predicted < INVALID_LABEL) | (predicted >= n_classes)
    if unknown.any():
        raise PredictionsError(
            f"{name}: column 'predicted_label' has {int(unknown.sum())} unknown class "
            f"id(s) {shown(np.unique(predicted[unknown]))} (row_id "
            f"{shown(row_ids[unknown])}); allowed: 0..{n_classes - 1}, or -1 for an "
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
                f"{name}: {int(rows.sum())} row(s) {problem}: row_id {shown(row_ids[rows])}"
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
    names = check_label_names(label_names)
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
