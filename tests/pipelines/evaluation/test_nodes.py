"""Nodes of the evaluation pipeline on synthetic predictions and reviews."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro_datasets.matplotlib import MatplotlibDataset
from matplotlib.figure import Figure

from llm_finetuning.pipelines.evaluation.nodes import (
    accuracy_by_length,
    compare_models,
    compare_with_baselines,
    metrics_for_mlflow,
    most_confident_mistakes,
    plot_accuracy_by_length,
    plot_confusion_matrix,
    plot_reliability_diagram,
    plot_roc_curve,
    predict_majority_class,
    predict_tfidf_logreg,
    score_classifier,
)
from llm_finetuning.predictions import (
    PredictionsError,
    predictions_frame,
)

SCORING = {"n_bootstrap": 50}
REPORT = {"model_name": "tiny", "top_k_mistakes": 5, "length_buckets": 3}
TFIDF = {"ngram_range": [1, 2], "min_df": 1, "C": 4.0}


@pytest.fixture
def model_predictions(test_reviews, label_names) -> pd.DataFrame:
    """A decent but imperfect classifier: 75% right, confident when right."""
    rng = np.random.default_rng(0)
    labels = test_reviews["label"].to_numpy()
    right = np.arange(len(labels)) % 4 != 0
    p_true = np.where(
        right, rng.uniform(0.6, 0.99, len(labels)), rng.uniform(0.01, 0.4, len(labels))
    )
    probabilities = np.zeros((len(labels), 2))
    probabilities[np.arange(len(labels)), labels] = p_true
    probabilities[np.arange(len(labels)), 1 - labels] = 1 - p_true
    return predictions_frame(
        test_reviews["row_id"], labels, label_names, probabilities=probabilities
    )


def png_bytes(figure: Figure, tmp_path, name: str) -> bytes:
    """Save through the catalog's dataset type and read the file back."""
    path = tmp_path / f"{name}.png"
    MatplotlibDataset(filepath=str(path)).save(figure)
    return path.read_bytes()


def drawn_artists(figure: Figure) -> int:
    return sum(
        len(a.lines) + len(a.patches) + len(a.images) + len(a.texts)
        for a in figure.axes
    )


# --- figures --------------------------------------------------------------------------


def test_all_figures_are_produced_and_non_empty(
    model_predictions, test_reviews, label_names, tmp_path
):
    metrics = score_classifier(model_predictions, label_names, SCORING, seed=0)
    table = accuracy_by_length(model_predictions, test_reviews, label_names, REPORT)
    figures = {
        "confusion": plot_confusion_matrix(metrics, REPORT),
        "roc": plot_roc_curve(model_predictions, label_names, REPORT),
        "reliability": plot_reliability_diagram(
            model_predictions, label_names, SCORING, REPORT
        ),
        "length": plot_accuracy_by_length(table, REPORT),
    }
    for name, figure in figures.items():
        assert isinstance(figure, Figure)
        assert drawn_artists(figure) > 0, name
        content = png_bytes(figure, tmp_path, name)
        assert content.startswith(b"\x89PNG"), name
        assert len(content) > 5_000, name
    roc_axes = figures["roc"].axes[0]
    assert "tiny" in roc_axes.get_title()
    # The ROC curve ends at (1, 1) and the confusion matrix shows counts and shares.
    curve = roc_axes.lines[0]
    assert (curve.get_xdata()[-1], curve.get_ydata()[-1]) == (1.0, 1.0)
    texts = [t.get_text() for t in figures["confusion"].axes[0].texts]
    assert any("%" in t for t in texts)


def test_label_only_classifier_gets_explanatory_figures(
    test_reviews, label_names, tmp_path
):
    labels = test_reviews["label"].to_numpy()
    predictions = predictions_frame(
        test_reviews["row_id"], labels, label_names, predicted_labels=labels
    )
    for figure in (
        plot_roc_curve(predictions, label_names, REPORT),
        plot_reliability_diagram(predictions, label_names, SCORING, REPORT),
    ):
        assert "No class probabilities" in figure.axes[0].texts[0].get_text()
        assert len(png_bytes(figure, tmp_path, "message")) > 1_000


# --- accuracy by length and error analysis --------------------------------------------


def test_accuracy_by_length_buckets_cover_every_review(
    model_predictions, test_reviews, label_names
):
    table = accuracy_by_length(model_predictions, test_reviews, label_names, REPORT)
    assert table["count"].sum() == len(test_reviews)
    assert len(table) == 3
    assert table["min_words"].is_monotonic_increasing
    correct = (model_predictions["predicted_label"] == model_predictions["label"]).sum()
    assert table["correct"].sum() == correct
    assert (
        (table["ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["ci_high"])
    ).all()


def test_most_confident_mistakes_come_first_with_their_text(
    model_predictions, test_reviews, label_names
):
    mistakes = most_confident_mistakes(
        model_predictions, test_reviews, label_names, REPORT
    )
    wrong = model_predictions[
        model_predictions["predicted_label"] != model_predictions["label"]
    ]
    assert len(mistakes) == min(5, len(wrong))
    assert mistakes["confidence"].is_monotonic_decreasing
    assert (mistakes["confidence"] > 0.5).all()
    assert (mistakes["true_label"] != mistakes["predicted"]).all()
    texts = test_reviews.set_index("row_id")["text"]
    assert mistakes["text"].tolist() == texts.loc[mistakes["row_id"]].tolist()
    top = wrong.assign(
        confidence=wrong[["prob_negative", "prob_positive"]].max(axis=1)
    ).nlargest(1, "confidence")
    assert mistakes["row_id"].iloc[0] == top["row_id"].iloc[0]


def test_invalid_answers_are_listed_as_mistakes_without_confidence(
    test_reviews, label_names
):
    labels = test_reviews["label"].to_numpy()
    predicted = labels.copy()
    predicted[:2] = -1
    predictions = predictions_frame(
        test_reviews["row_id"], labels, label_names, predicted_labels=predicted
    )
    mistakes = most_confident_mistakes(predictions, test_reviews, label_names, REPORT)
    assert mistakes["predicted"].tolist() == ["<invalid>", "<invalid>"]
    assert mistakes["confidence"].isna().all()


def test_predictions_and_reviews_must_cover_the_same_rows(
    model_predictions, test_reviews, label_names
):
    with pytest.raises(PredictionsError, match="cover different rows"):
        most_confident_mistakes(
            model_predictions, test_reviews.iloc[1:], label_names, REPORT
        )
    relabelled = test_reviews.assign(label=1 - test_reviews["label"])
    with pytest.raises(PredictionsError, match="disagree on the label"):
        accuracy_by_length(model_predictions, relabelled, label_names, REPORT)


# --- baselines --------------------------------------------------------------------------


def test_baselines_are_trained_on_train_and_predict_test(
    train_reviews, test_reviews, label_names
):
    tfidf = predict_tfidf_logreg(
        train_reviews, test_reviews, label_names, TFIDF, seed=0
    )
    assert tfidf["row_id"].tolist() == sorted(test_reviews["row_id"])
    # The sentiment words give the label away: a trained TF-IDF model gets them all.
    assert (tfidf["predicted_label"] == tfidf["label"]).mean() == 1.0
    unbalanced = train_reviews[train_reviews["label"] == 1].head(20)
    unbalanced = pd.concat(
        [unbalanced, train_reviews[train_reviews["label"] == 0].head(5)]
    )
    majority = predict_majority_class(unbalanced, test_reviews, label_names)
    assert (majority["predicted_label"] == 1).all()
    assert majority["prob_positive"].unique().tolist() == pytest.approx([20 / 25])
    report = score_classifier(majority, label_names, SCORING, seed=0)
    assert report["metrics"]["roc_auc"]["value"] == pytest.approx(0.5)


def test_baselines_reject_bad_reviews(train_reviews, test_reviews, label_names):
    with pytest.raises(ValueError, match=r"train_reviews: 1 row\(s\) have no text"):
        predict_majority_class(
            train_reviews.assign(text=[""] + train_reviews["text"].tolist()[1:]),
            test_reviews,
            label_names,
        )
    with pytest.raises(
        ValueError, match=r"test_reviews: 1 row\(s\) have a label outside"
    ):
        predict_tfidf_logreg(
            train_reviews,
            test_reviews.assign(label=[7] + test_reviews["label"].tolist()[1:]),
            label_names,
            TFIDF,
            seed=0,
        )
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        predict_majority_class(
            train_reviews.drop(columns="text"), test_reviews, label_names
        )
    with pytest.raises(
        ValueError, match=r"evaluation\.baselines\.tfidf_logreg\.ngrams: unknown key"
    ):
        predict_tfidf_logreg(
            train_reviews, test_reviews, label_names, {"ngrams": [1, 2]}, 0
        )


# --- comparison and MLflow ----------------------------------------------------------


def test_comparison_with_baselines(
    model_predictions, train_reviews, test_reviews, label_names
):
    majority = predict_majority_class(train_reviews, test_reviews, label_names)
    tfidf = predict_tfidf_logreg(
        train_reviews, test_reviews, label_names, TFIDF, seed=0
    )
    metrics = {
        name: score_classifier(frame, label_names, SCORING, seed=0)
        for name, frame in [
            ("model", model_predictions),
            ("majority", majority),
            ("tfidf", tfidf),
        ]
    }
    comparison, table = compare_with_baselines(
        evaluation_metrics=metrics["model"],
        majority_class_metrics=metrics["majority"],
        tfidf_logreg_metrics=metrics["tfidf"],
        test_predictions=model_predictions,
        majority_class_predictions=majority,
        tfidf_logreg_predictions=tfidf,
        label_names=label_names,
        scoring=SCORING,
        report=REPORT,
        seed=0,
    )
    assert comparison["reference"] == "tiny"
    assert list(comparison["models"]) == ["tiny", "majority_class", "tfidf_logreg"]
    assert comparison["models"]["tiny"]["reference_minus_model"] is None
    difference = comparison["models"]["tfidf_logreg"]["reference_minus_model"][
        "accuracy"
    ]
    assert difference["value"] == pytest.approx(0.75 - 1.0)
    assert difference["ci_high"] < 0  # the tiny model is worse, beyond noise
    lines = table.splitlines()
    assert lines[0] == "# tiny against baselines"
    rows = [line for line in lines if line.startswith("| tfidf_logreg")]
    assert rows and "1.000" in rows[0] and "-0.250" in rows[0]

    logged = metrics_for_mlflow(metrics["model"], comparison)
    assert logged["test.accuracy"] == {"value": pytest.approx(0.75), "step": 0}
    assert logged["comparison.tfidf_logreg.accuracy"]["value"] == pytest.approx(1.0)
    assert "comparison.tfidf_logreg.reference_minus_model.accuracy" in logged


def test_compare_models_checks_its_inputs(model_predictions, label_names):
    report = score_classifier(model_predictions, label_names, SCORING, seed=0)
    with pytest.raises(ValueError, match="reference 'other'"):
        compare_models(
            {"a": report},
            {"a": model_predictions},
            "other",
            label_names=label_names,
            scoring=SCORING,
            seed=0,
        )
    with pytest.raises(ValueError, match="predictions for"):
        compare_models(
            {"a": report, "b": report},
            {"a": model_predictions},
            "a",
            label_names=label_names,
            scoring=SCORING,
            seed=0,
        )
