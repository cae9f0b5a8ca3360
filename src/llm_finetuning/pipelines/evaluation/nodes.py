"""Nodes of the ``evaluation`` pipeline: predict, score, plot, explain, compare.

Every node after :func:`predict_test_set` works on a predictions frame
(``row_id, label, predicted_label[, prob_<label name>...]``, see
:mod:`llm_finetuning.metrics`), so any classifier that yields labels or probabilities
(the baselines here, the Azure OpenAI deployment) is scored, plotted and compared by
the same functions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llm_finetuning.datasets.model_folder import TextClassifier
from llm_finetuning.metrics import (
    flatten_metrics,
    format_interval,
    paired_bootstrap_difference,
    score_predictions,
)
from llm_finetuning.pipelines.evaluation.params import (
    InferenceParams,
    ReportParams,
    ScoringParams,
    TfidfLogRegParams,
)
from llm_finetuning.predictions import (
    INVALID_LABEL,
    LABEL,
    PREDICTED_LABEL,
    ROW_ID,
    PredictionsError,
    has_probabilities,
    predictions_frame,
    probability_columns,
    validate_predictions,
)

# The model-facing helpers (inference: torch, transformers; baselines: scikit-learn;
# plots: matplotlib) load in the nodes that use them, so building the pipelines does
# not import those libraries.
if TYPE_CHECKING:
    from datasets import DatasetDict
    from matplotlib.figure import Figure
else:
    # Kedro resolves node functions' type hints (typing.get_type_hints) to validate
    # their ``params:`` inputs: these names must resolve without the imports.
    DatasetDict = Figure = Any

logger = logging.getLogger(__name__)

TEST_SPLIT = "test"
INVALID_NAME = "<invalid>"


# --- inference ----------------------------------------------------------------------


def predict_test_set(
    fine_tuned_model: TextClassifier,
    tokenized_reviews: DatasetDict,
    label_names: list[str],
    inference: InferenceParams,
) -> pd.DataFrame:
    """Class probabilities of the fine-tuned model for every test review.

    Batched, longest reviews first, padded per batch, in inference mode on the best
    device (see :func:`~llm_finetuning.pipelines.evaluation.inference.predict_probabilities`).

    Returns:
        The ``test_predictions`` frame: ``row_id, label, predicted_label`` and one
        ``prob_<label name>`` column per class, sorted by ``row_id``.
    """
    config = InferenceParams.model_validate(inference)
    if TEST_SPLIT not in tokenized_reviews:
        raise ValueError(
            f"tokenized_reviews has no '{TEST_SPLIT}' split; it has {list(tokenized_reviews)}"
        )
    test = tokenized_reviews[TEST_SPLIT]
    missing = {"row_id", "input_ids", "labels"} - set(test.column_names)
    if missing:
        raise ValueError(
            f"tokenized_reviews['{TEST_SPLIT}'] lacks column(s) {sorted(missing)}; "
            f"it has {test.column_names}"
        )
    from llm_finetuning.pipelines.evaluation.inference import (
        check_classifier,
        predict_probabilities,
    )

    check_classifier(fine_tuned_model.model, fine_tuned_model.tokenizer, label_names)
    probabilities = predict_probabilities(
        fine_tuned_model.model,
        fine_tuned_model.tokenizer,
        test,
        batch_size=config.batch_size,
        device=config.device,
        pad_to_multiple_of=config.pad_to_multiple_of,
    )
    return predictions_frame(
        test["row_id"], test["labels"], label_names, probabilities=probabilities
    )


# --- scoring ------------------------------------------------------------------------


def score_classifier(
    predictions: pd.DataFrame,
    label_names: list[str],
    scoring: ScoringParams,
    seed: int,
) -> dict[str, Any]:
    """Metrics with bootstrap confidence intervals of any classifier's predictions.

    See :func:`llm_finetuning.metrics.score_predictions` for the report and for how
    invalid answers (``predicted_label == -1``) are scored.
    """
    config = ScoringParams.model_validate(scoring)
    return score_predictions(
        predictions,
        label_names,
        n_bootstrap=config.n_bootstrap,
        confidence_level=config.confidence_level,
        calibration_bins=config.calibration_bins,
        seed=seed,
    )


def metrics_for_mlflow(
    evaluation_metrics: dict[str, Any], baseline_comparison: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Scalar metrics in kedro-mlflow's ``MlflowMetricsHistoryDataset`` format.

    ``test.<metric>`` (with ``.ci_low``/``.ci_high``) for the evaluated model and
    ``comparison.<model>.<metric>`` for every model of the comparison.
    """
    flat = flatten_metrics(evaluation_metrics, "test")
    for name, row in baseline_comparison["models"].items():
        model = re.sub(r"[^0-9A-Za-z_\-.]+", "_", name)
        for metric in ("accuracy", "f1_macro", "roc_auc", "log_loss"):
            if row.get(metric):
                flat[f"comparison.{model}.{metric}"] = float(row[metric]["value"])
        difference = row.get("reference_minus_model")
        if difference:
            flat[f"comparison.{model}.reference_minus_model.accuracy"] = float(
                difference["accuracy"]["value"]
            )
    return {key: {"value": value, "step": 0} for key, value in flat.items()}


# --- figures ------------------------------------------------------------------------


def plot_confusion_matrix(
    evaluation_metrics: dict[str, Any], report: ReportParams
) -> Figure:
    """Confusion matrix (counts and row shares) from the metrics report."""
    config = ReportParams.model_validate(report)
    from llm_finetuning.pipelines.evaluation import plots

    return plots.confusion_matrix_figure(
        evaluation_metrics, f"Confusion matrix: {config.model_name}"
    )


def plot_roc_curve(
    predictions: pd.DataFrame, label_names: list[str], report: ReportParams
) -> Figure:
    """ROC curve; a figure saying so when the classifier gave no probabilities."""
    config = ReportParams.model_validate(report)
    validate_predictions(predictions, label_names)
    from llm_finetuning.pipelines.evaluation import plots

    return plots.roc_curve_figure(
        predictions, label_names, f"ROC curve: {config.model_name}"
    )


def plot_reliability_diagram(
    predictions: pd.DataFrame,
    label_names: list[str],
    scoring: ScoringParams,
    report: ReportParams,
) -> Figure:
    """Reliability (calibration) diagram with as many bins as the calibration error."""
    config = ReportParams.model_validate(report)
    bins = ScoringParams.model_validate(scoring).calibration_bins
    validate_predictions(predictions, label_names)
    from llm_finetuning.pipelines.evaluation import plots

    return plots.reliability_figure(
        predictions, label_names, bins, f"Reliability: {config.model_name}"
    )


def _join_reviews(
    predictions: pd.DataFrame, reviews: pd.DataFrame, label_names: Sequence[str]
) -> pd.DataFrame:
    """Predictions with their review text; the two must cover the same row_ids."""
    validate_predictions(predictions, label_names)
    from llm_finetuning.pipelines.evaluation import baselines

    baselines.check_reviews(reviews, label_names, "test_reviews")
    joined = predictions.merge(
        reviews[[ROW_ID, "text", "label"]].rename(columns={"label": "review_label"}),
        on=ROW_ID,
        how="outer",
        indicator=True,
        validate="one_to_one",
    )
    unmatched = joined["_merge"] != "both"
    if unmatched.any():
        only_predictions = joined.loc[joined["_merge"] == "left_only", ROW_ID].tolist()
        only_reviews = joined.loc[joined["_merge"] == "right_only", ROW_ID].tolist()
        raise PredictionsError(
            "predictions and test_reviews cover different rows: row_id only in the "
            f"predictions {only_predictions[:5]} ({len(only_predictions)}), only in "
            f"test_reviews {only_reviews[:5]} ({len(only_reviews)}). Were they made "
            "from the same test split?"
        )
    disagree = joined[LABEL].to_numpy() != joined["review_label"].to_numpy()
    if disagree.any():
        raise PredictionsError(
            f"predictions and test_reviews disagree on the label of row_id "
            f"{joined.loc[disagree, ROW_ID].tolist()[:5]} ({int(disagree.sum())} rows)"
        )
    return joined.drop(columns=["_merge", "review_label"])


def accuracy_by_length(
    predictions: pd.DataFrame,
    test_reviews: pd.DataFrame,
    label_names: list[str],
    report: ReportParams,
) -> pd.DataFrame:
    """Accuracy per review-length bucket (words; equal-count buckets) with 95% Wilson
    intervals. Invalid answers count as wrong. Length in words, not tokens, so every
    classifier (whatever its tokenizer) is bucketed the same way."""
    from scipy.stats import binomtest

    config = ReportParams.model_validate(report)
    joined = _join_reviews(predictions, test_reviews, label_names)
    words = joined["text"].str.split().str.len().to_numpy()
    correct = (joined[PREDICTED_LABEL] == joined[LABEL]).to_numpy()
    edges = np.unique(np.quantile(words, np.linspace(0, 1, config.length_buckets + 1)))
    # Bucket i holds lengths in [edges[i], edges[i+1]), the last one closed on the right.
    buckets = np.clip(
        np.searchsorted(edges, words, side="right") - 1, 0, max(len(edges) - 2, 0)
    )
    rows = []
    for bucket in range(max(len(edges) - 1, 1)):
        members = buckets == bucket
        count, right = int(members.sum()), int(correct[members].sum())
        if count == 0:
            continue
        interval = binomtest(right, count).proportion_ci(0.95, method="wilson")
        low, high = int(words[members].min()), int(words[members].max())
        rows.append(
            {
                "bucket": f"{low}-{high}",
                "min_words": low,
                "max_words": high,
                "count": count,
                "correct": right,
                "accuracy": right / count,
                "ci_low": float(interval.low),
                "ci_high": float(interval.high),
            }
        )
    return pd.DataFrame(rows)


def plot_accuracy_by_length(table: pd.DataFrame, report: ReportParams) -> Figure:
    """Bar chart of :func:`accuracy_by_length`."""
    config = ReportParams.model_validate(report)
    from llm_finetuning.pipelines.evaluation import plots

    return plots.accuracy_by_length_figure(
        table, f"Accuracy by review length: {config.model_name}"
    )


# --- error analysis -----------------------------------------------------------------


def most_confident_mistakes(
    predictions: pd.DataFrame,
    test_reviews: pd.DataFrame,
    label_names: list[str],
    report: ReportParams,
) -> pd.DataFrame:
    """The wrong predictions the model was surest of, with their text, for review.

    Sorted by the probability given to the wrong class, highest first; without
    probabilities (a label-only classifier) and for invalid answers the confidence is
    empty and those rows come last.
    """
    config = ReportParams.model_validate(report)
    joined = _join_reviews(predictions, test_reviews, label_names)
    wrong = joined[joined[PREDICTED_LABEL] != joined[LABEL]].copy()
    names = np.array([*label_names, INVALID_NAME])  # index -1 -> INVALID_NAME
    wrong["true_label"] = names[wrong[LABEL].to_numpy()]
    wrong["predicted"] = names[wrong[PREDICTED_LABEL].to_numpy()]
    if has_probabilities(wrong):
        probabilities = wrong[probability_columns(label_names)].to_numpy(
            dtype=np.float64
        )
        rows = np.arange(len(wrong))
        valid = wrong[PREDICTED_LABEL].to_numpy() != INVALID_LABEL
        predicted = np.where(valid, wrong[PREDICTED_LABEL].to_numpy(), 0)
        wrong["confidence"] = np.where(valid, probabilities[rows, predicted], np.nan)
        wrong["prob_true_label"] = probabilities[rows, wrong[LABEL].to_numpy()]
    else:
        wrong["confidence"] = np.nan
        wrong["prob_true_label"] = np.nan
    wrong["words"] = wrong["text"].str.split().str.len()
    wrong = wrong.sort_values(
        ["confidence", ROW_ID], ascending=[False, True], na_position="last"
    ).head(config.top_k_mistakes)
    columns = [
        ROW_ID,
        "true_label",
        "predicted",
        "confidence",
        "prob_true_label",
        "words",
        "text",
    ]
    return wrong[columns].reset_index(drop=True)


# --- baselines ----------------------------------------------------------------------


def predict_majority_class(
    train_reviews: pd.DataFrame, test_reviews: pd.DataFrame, label_names: list[str]
) -> pd.DataFrame:
    """Majority-class baseline predictions on the test reviews (predictions frame)."""
    from llm_finetuning.pipelines.evaluation import baselines

    return baselines.fit_and_predict(
        baselines.majority_class_classifier(), train_reviews, test_reviews, label_names
    )


def predict_tfidf_logreg(
    train_reviews: pd.DataFrame,
    test_reviews: pd.DataFrame,
    label_names: list[str],
    tfidf_logreg: TfidfLogRegParams,
    seed: int,
) -> pd.DataFrame:
    """TF-IDF + logistic regression baseline predictions on the test reviews."""
    from llm_finetuning.pipelines.evaluation import baselines

    config = TfidfLogRegParams.model_validate(tfidf_logreg)
    return baselines.fit_and_predict(
        baselines.tfidf_logreg_classifier(config, seed),
        train_reviews,
        test_reviews,
        label_names,
    )


# --- comparison ---------------------------------------------------------------------


def compare_models(
    metrics_by_model: Mapping[str, Mapping[str, Any]],
    predictions_by_model: Mapping[str, pd.DataFrame],
    reference: str,
    *,
    label_names: Sequence[str],
    scoring: ScoringParams,
    seed: int,
) -> tuple[dict[str, Any], str]:
    """Compare classifiers scored on the same test rows against ``reference``.

    Besides each model's own metrics, the table gives the accuracy and macro-F1 of
    ``reference`` minus those of each other model with a *paired* bootstrap interval:
    an interval that excludes 0 means the difference is not resampling noise.

    Returns:
        The comparison as a JSON-able dict and as a Markdown table.
    """
    if reference not in metrics_by_model:
        raise ValueError(
            f"reference {reference!r} is not among {list(metrics_by_model)}"
        )
    if set(metrics_by_model) != set(predictions_by_model):
        raise ValueError(
            f"metrics for {sorted(metrics_by_model)} but predictions for "
            f"{sorted(predictions_by_model)}"
        )
    config = ScoringParams.model_validate(scoring)
    models: dict[str, Any] = {}
    for name, report in metrics_by_model.items():
        metrics = report["metrics"]
        difference = None
        if name != reference:
            difference = paired_bootstrap_difference(
                predictions_by_model[reference],
                predictions_by_model[name],
                label_names,
                n_bootstrap=config.n_bootstrap,
                confidence_level=config.confidence_level,
                seed=seed,
            )
        models[name] = {
            "accuracy": metrics["accuracy"],
            "f1_macro": metrics["f1_macro"],
            "roc_auc": metrics.get("roc_auc"),
            "log_loss": metrics.get("log_loss"),
            "n_examples": report["n_examples"],
            "n_invalid_predictions": report["n_invalid_predictions"],
            "reference_minus_model": difference,
        }
    comparison = {
        "reference": reference,
        "confidence_level": config.confidence_level,
        "n_bootstrap": config.n_bootstrap,
        "models": models,
    }
    level = f"{config.confidence_level:.0%}"
    lines = [
        f"# {reference} against baselines",
        "",
        f"Same test rows for every model; values with {level} bootstrap intervals "
        f"({config.n_bootstrap} resamples). The last column is {reference} minus the "
        "model (paired bootstrap): an interval above 0 means "
        f"{reference} is better beyond resampling noise.",
        "",
        f"| model | accuracy | macro F1 | ROC-AUC | log-loss | invalid answers | "
        f"{reference} minus model, accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in models.items():
        difference = row["reference_minus_model"]
        lines.append(
            f"| {name} | {format_interval(row['accuracy'])} | "
            f"{format_interval(row['f1_macro'])} | {format_interval(row['roc_auc'])} | "
            f"{format_interval(row['log_loss'])} | {row['n_invalid_predictions']} | "
            f"{format_interval(difference['accuracy']) if difference else '(reference)'} |"
        )
    return comparison, "\n".join(lines) + "\n"


def compare_with_baselines(
    *,
    evaluation_metrics: dict[str, Any],
    majority_class_metrics: dict[str, Any],
    tfidf_logreg_metrics: dict[str, Any],
    test_predictions: pd.DataFrame,
    majority_class_predictions: pd.DataFrame,
    tfidf_logreg_predictions: pd.DataFrame,
    label_names: list[str],
    scoring: ScoringParams,
    report: ReportParams,
    seed: int,
) -> tuple[dict[str, Any], str]:
    """The fine-tuned model against the majority class and TF-IDF + LR (JSON, Markdown)."""
    reference = ReportParams.model_validate(report).model_name
    comparison, table = compare_models(
        {
            reference: evaluation_metrics,
            "majority_class": majority_class_metrics,
            "tfidf_logreg": tfidf_logreg_metrics,
        },
        {
            reference: test_predictions,
            "majority_class": majority_class_predictions,
            "tfidf_logreg": tfidf_logreg_predictions,
        },
        reference,
        label_names=label_names,
        scoring=scoring,
        seed=seed,
    )
    logger.info("Comparison with baselines:\n%s", table)
    return comparison, table
