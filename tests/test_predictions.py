"""The predictions frame contract (llm_finetuning.predictions): what every classifier
hands to the scoring, and the errors a bad frame gets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llm_finetuning.metrics import score_predictions
from llm_finetuning.predictions import (
    PredictionsError,
    predictions_frame,
    validate_predictions,
)

NAMES = ["neg", "pos"]


def frame(labels, predicted, probabilities=None, names=NAMES) -> pd.DataFrame:
    data = {
        "row_id": np.arange(len(labels)) * 10,
        "label": labels,
        "predicted_label": predicted,
    }
    if probabilities is not None:
        for k, name in enumerate(names):
            data[f"prob_{name}"] = np.asarray(probabilities, dtype=float)[:, k]
    return pd.DataFrame(data)


# --- bad frames --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predictions", "message"),
    [
        (frame([0, 1], [0, 1]).drop(columns="label"), r"lacks column\(s\) \['label'\]"),
        (frame([0, 2], [0, 1]), r"column 'label' has 1 unknown class id\(s\) \[2\]"),
        (frame([0, 1], [0, 3]), r"'predicted_label' has 1 unknown class id\(s\) \[3\]"),
        (frame([0, 1], [0.0, float("nan")]), r"missing value.*use -1"),
        (
            frame([0, 1], [0, 1]).assign(row_id=[4, 4]),
            r"row_id must be unique; repeated: \[4\]",
        ),
        (
            frame([0, 1], [0, 1], [[0.5, 0.5], [float("nan"), 1.0]]),
            r"some probabilities missing",
        ),
        (
            frame([0, 1], [0, 1], [[0.5, 0.5], [float("nan")] * 2]),
            r"valid prediction.*NaN",
        ),
        (
            frame([0, 1], [0, -1], [[0.5, 0.5], [0.5, 0.5]]),
            r"invalid answers.*carrying",
        ),
        (
            frame([0, 1], [0, 1], [[1.2, -0.2], [0.5, 0.5]]),
            r"outside \[0, 1\].*row_id \[0\]",
        ),
        (
            frame([0, 1], [0, 1], [[0.5, 0.6], [0.5, 0.5]]),
            r"do not sum to 1.*row_id \[0\]",
        ),
        (frame([0, 1], [0, 1]).assign(prob_neg=[0.5, 0.5]), r"missing \['prob_pos'\]"),
        (frame([0, 1], [0, 1]).iloc[:0], r"has no rows"),
    ],
    ids=[
        "missing column",
        "unknown label",
        "unknown predicted label",
        "NaN predicted label",
        "duplicate row id",
        "partly NaN probabilities",
        "NaN probabilities",
        "invalid answer with probabilities",
        "out-of-range probabilities",
        "probabilities not summing to 1",
        "probability column missing",
        "empty",
    ],
)
def test_bad_predictions_are_rejected_with_a_clear_error(predictions, message):
    with pytest.raises(PredictionsError, match=message):
        validate_predictions(predictions, NAMES)
    with pytest.raises(PredictionsError, match=message):
        score_predictions(predictions, NAMES, n_bootstrap=5)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(PredictionsError, match="mismatched lengths"):
        predictions_frame([1, 2, 3], [0, 1], NAMES, predicted_labels=[0, 1, 1])
    with pytest.raises(PredictionsError, match="mismatched lengths"):
        predictions_frame([1, 2], [0, 1], NAMES, probabilities=np.full((3, 2), 0.5))
    with pytest.raises(PredictionsError, match=r"shape \(n, 2\)"):
        predictions_frame([1, 2], [0, 1], NAMES, probabilities=np.full((2, 3), 1 / 3))
