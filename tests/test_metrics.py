"""llm_finetuning.metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from llm_finetuning.metrics import (
    _label_metrics_from_counts,
    calibration_table,
    flatten_metrics,
    paired_bootstrap_difference,
    score_predictions,
)
from llm_finetuning.predictions import PredictionsError, predictions_frame
from tests.test_predictions import NAMES, frame


def value(report, metric):
    return report["metrics"][metric]["value"]


# --- hand-computed values -----------------------------------------------------------


def test_label_metrics_by_hand_with_an_invalid_answer():
    # true   0 0 0 1 1  1
    # pred   0 0 1 1 1 -1   (the last answer was unparseable)
    report = score_predictions(
        frame([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, -1]), NAMES, n_bootstrap=50
    )
    assert value(report, "accuracy") == pytest.approx(4 / 6)
    neg, pos = report["per_class"]["neg"], report["per_class"]["pos"]
    # neg: 2 predicted, both right; 3 true, 2 found.
    assert neg["precision"]["value"] == pytest.approx(1.0)
    assert neg["recall"]["value"] == pytest.approx(2 / 3)
    assert neg["f1"]["value"] == pytest.approx(0.8)
    # pos: 3 predicted, 2 right; 3 true, 2 found (the invalid one is a false negative).
    assert pos["precision"]["value"] == pytest.approx(2 / 3)
    assert pos["recall"]["value"] == pytest.approx(2 / 3)
    assert pos["f1"]["value"] == pytest.approx(2 / 3)
    assert (neg["support"], pos["support"]) == (3, 3)
    assert value(report, "precision_macro") == pytest.approx(5 / 6)
    assert value(report, "recall_macro") == pytest.approx(2 / 3)
    assert value(report, "f1_macro") == pytest.approx((0.8 + 2 / 3) / 2)
    assert report["confusion_matrix"]["counts"] == [[2, 1], [0, 2]]
    assert report["confusion_matrix"]["invalid_by_true_label"] == [0, 1]
    assert report["confusion_matrix"]["rates"]["value"][1] == pytest.approx([0, 2 / 3])
    assert report["n_invalid_predictions"] == 1
    assert report["invalid_prediction_rate"] == pytest.approx(1 / 6)


def test_probability_metrics_by_hand():
    # P(pos) = 0.1, 0.6 for the negatives and 0.4, 0.9 for the positives.
    probabilities = [[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.1, 0.9]]
    report = score_predictions(
        frame([0, 0, 1, 1], [0, 1, 0, 1], probabilities), NAMES, n_bootstrap=50
    )
    # Of the 4 (positive, negative) pairs, 3 rank the positive higher.
    assert value(report, "roc_auc") == pytest.approx(0.75)
    # Probability given to the true class: 0.9, 0.4, 0.4, 0.9.
    assert value(report, "log_loss") == pytest.approx(
        -(math.log(0.9) + math.log(0.4)) / 2
    )
    # Confidence 0.9 (right, right) and 0.6 (wrong, wrong): half |1 - 0.9| + half |0 - 0.6|.
    assert value(report, "expected_calibration_error") == pytest.approx(0.35)
    assert report["n_examples_with_probabilities"] == 4
    assert report["skipped"] == {}


def test_calibration_table_by_hand():
    probabilities = [[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.1, 0.9]]
    table = calibration_table(frame([0, 0, 1, 1], [0, 1, 0, 1], probabilities), NAMES)
    assert table["count"].tolist() == [2, 2]
    assert table["mean_confidence"].tolist() == pytest.approx([0.6, 0.9])
    assert table["accuracy"].tolist() == pytest.approx([0.0, 1.0])


# --- agreement with scikit-learn ----------------------------------------------------


@pytest.fixture
def three_class_predictions() -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(0)
    n, names = 600, ["a", "b", "c"]
    labels = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predictions = predictions_frame(
        np.arange(n), labels, names, probabilities=probabilities
    )
    return predictions, names


def test_point_estimates_match_scikit_learn(three_class_predictions):
    predictions, names = three_class_predictions
    labels = predictions["label"].to_numpy()
    predicted = predictions["predicted_label"].to_numpy()
    probabilities = predictions[["prob_a", "prob_b", "prob_c"]].to_numpy()
    report = score_predictions(predictions, names, n_bootstrap=20)
    assert value(report, "accuracy") == pytest.approx(accuracy_score(labels, predicted))
    _, _, f1, _ = precision_recall_fscore_support(labels, predicted, average="macro")
    assert value(report, "f1_macro") == pytest.approx(f1)
    assert value(report, "roc_auc") == pytest.approx(
        roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    )
    assert value(report, "log_loss") == pytest.approx(log_loss(labels, probabilities))


def test_resampled_metric_definitions_match_scikit_learn():
    """The bootstrap derives metrics from confusion counts: same numbers as sklearn."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 500)
    predicted = np.where(rng.random(500) < 0.6, labels, rng.integers(-1, 3, 500))
    counts = confusion_matrix(labels, predicted, labels=[0, 1, 2, -1])[:3, :]
    ours = _label_metrics_from_counts(counts)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=[0, 1, 2], zero_division=0.0
    )
    assert float(ours["accuracy"]) == pytest.approx(accuracy_score(labels, predicted))
    assert ours["precision"] == pytest.approx(precision)
    assert ours["recall"] == pytest.approx(recall)
    assert ours["f1"] == pytest.approx(f1)
    assert float(ours["f1_macro"]) == pytest.approx(f1.mean())


# --- confidence intervals -----------------------------------------------------------


def test_intervals_bracket_the_estimate_and_have_the_binomial_width():
    rng = np.random.default_rng(3)
    n = 2000
    labels = rng.integers(0, 2, n)
    predicted = np.where(rng.random(n) < 0.8, labels, 1 - labels)
    report = score_predictions(frame(labels, predicted), NAMES, n_bootstrap=400, seed=7)
    accuracy = report["metrics"]["accuracy"]
    assert accuracy["ci_low"] < accuracy["value"] < accuracy["ci_high"]
    p = accuracy["value"]
    expected_width = 2 * 1.96 * math.sqrt(p * (1 - p) / n)
    assert accuracy["ci_high"] - accuracy["ci_low"] == pytest.approx(
        expected_width, rel=0.2
    )
    for entry in report["per_class"].values():
        assert entry["f1"]["ci_low"] <= entry["f1"]["value"] <= entry["f1"]["ci_high"]
    rates = report["confusion_matrix"]["rates"]
    assert rates["ci_low"][0][0] <= rates["value"][0][0] <= rates["ci_high"][0][0]


def test_same_seed_same_report_and_report_is_strict_json(three_class_predictions):
    predictions, names = three_class_predictions
    first = score_predictions(predictions, names, n_bootstrap=30, seed=5)
    second = score_predictions(predictions, names, n_bootstrap=30, seed=5)
    assert json.dumps(first, allow_nan=False) == json.dumps(second, allow_nan=False)
    assert first["bootstrap"] == {
        "method": "percentile",
        "n_resamples": 30,
        "confidence_level": 0.95,
        "seed": 5,
    }


# --- labels only and invalid answers --------------------------------------------------


def test_label_only_classifier_skips_probability_metrics_with_a_reason():
    report = score_predictions(
        frame([0, 1, 1, 0], [0, 1, -1, 1]), NAMES, n_bootstrap=20
    )
    assert set(report["metrics"]) == {
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
    }
    assert set(report["skipped"]) == {
        "roc_auc",
        "log_loss",
        "expected_calibration_error",
    }
    assert "labels only" in report["skipped"]["roc_auc"]
    assert value(report, "accuracy") == pytest.approx(0.5)


def test_probability_metrics_use_only_rows_with_probabilities():
    nan = float("nan")
    probabilities = [[0.9, 0.1], [0.2, 0.8], [nan, nan], [0.3, 0.7]]
    predictions = frame([0, 1, 1, 0], [0, 1, -1, 1], probabilities)
    report = score_predictions(predictions, NAMES, n_bootstrap=20)
    assert report["n_examples_with_probabilities"] == 3
    assert value(report, "accuracy") == pytest.approx(
        0.5
    )  # the invalid answer is wrong
    assert value(report, "log_loss") == pytest.approx(
        -(math.log(0.9) + math.log(0.8) + math.log(0.3)) / 3
    )


def test_roc_auc_skipped_when_a_class_is_absent():
    report = score_predictions(
        frame([1, 1], [1, 0], [[0.2, 0.8], [0.6, 0.4]]), NAMES, n_bootstrap=10
    )
    assert "roc_auc" not in report["metrics"]
    assert "not every class" in report["skipped"]["roc_auc"]


def test_bad_settings_are_rejected():
    with pytest.raises(PredictionsError, match="at least two classes"):
        score_predictions(frame([0, 0], [0, 0]), ["only"])
    with pytest.raises(ValueError, match="n_bootstrap"):
        score_predictions(frame([0, 1], [0, 1]), NAMES, n_bootstrap=0)
    with pytest.raises(ValueError, match="confidence_level"):
        score_predictions(frame([0, 1], [0, 1]), NAMES, confidence_level=95)


# --- paired comparison and MLflow keys --------------------------------------------------


def test_paired_difference_is_zero_for_identical_predictions_and_checks_rows():
    predictions = frame([0, 1, 1, 0, 1], [0, 1, 0, 0, 1])
    difference = paired_bootstrap_difference(
        predictions, predictions, NAMES, n_bootstrap=50
    )
    assert difference["accuracy"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    better = frame([0, 1, 1, 0, 1], [0, 1, 1, 0, 1])
    difference = paired_bootstrap_difference(better, predictions, NAMES, n_bootstrap=50)
    assert difference["accuracy"]["value"] == pytest.approx(0.2)
    with pytest.raises(PredictionsError, match="cover different rows"):
        paired_bootstrap_difference(
            predictions, predictions.iloc[:4], NAMES, n_bootstrap=5
        )


def test_flatten_metrics_keys_for_mlflow():
    report = score_predictions(
        frame(
            [0, 1, 1, 0],
            [0, 1, 1, 1],
            [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]],
            names=["not good", "good"],
        ),
        ["not good", "good"],
        n_bootstrap=10,
    )
    flat = flatten_metrics(report, "test")
    assert flat["test.accuracy"] == pytest.approx(0.75)
    assert "test.accuracy.ci_low" in flat
    assert "test.roc_auc.ci_high" in flat
    assert "test.per_class.not good.f1" in flat
    assert all(isinstance(v, float) for v in flat.values())
