"""The comparison report: same rows for every model, paired differences, models left out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llm_finetuning.metrics import paired_bootstrap_difference, score_predictions
from llm_finetuning.pipelines.model_comparison.report import (
    Candidate,
    compare_on_common_rows,
    comparison_markdown,
    comparison_metrics,
)
from llm_finetuning.predictions import PredictionsError, predictions_frame

LABELS = ["negative", "positive"]
SETTINGS = {"n_bootstrap": 200, "confidence_level": 0.95, "seed": 7}


def frame(row_ids, wrong=(), labels=None, probabilities=False) -> pd.DataFrame:
    """Predictions of rows ``row_ids`` (label = row_id % 2), wrong on ``wrong``."""
    row_ids = np.asarray(list(row_ids))
    truth = row_ids % 2 if labels is None else np.asarray(labels)
    predicted = np.where(np.isin(row_ids, list(wrong)), 1 - truth, truth)
    if probabilities:
        p1 = np.where(predicted == 1, 0.8, 0.2)
        return predictions_frame(
            row_ids, truth, LABELS, probabilities=np.c_[1 - p1, p1]
        )
    return predictions_frame(row_ids, truth, LABELS, predicted_labels=predicted)


def test_every_model_is_scored_on_the_rows_all_of_them_answered():
    fine_tuned = frame(range(40), wrong=[0, 1], probabilities=True)
    tfidf = frame(range(40), wrong=range(0, 40, 4))
    served = frame(range(0, 24, 2))  # a sample: 12 even rows
    report = compare_on_common_rows(
        [
            Candidate("fine_tuned", "fine-tuned model", fine_tuned),
            Candidate("tfidf_logreg", "TF-IDF", tfidf),
            Candidate("mlflow_serving", "served", served),
        ],
        LABELS,
        "fine_tuned",
        **SETTINGS,
    )
    common = list(range(0, 24, 2))
    assert report["n_common_rows"] == 12
    assert report["limited_to_common_rows"] == ["fine_tuned", "tfidf_logreg"]
    assert {m["n_rows"] for m in report["models"].values()} == {12}
    assert report["models"]["fine_tuned"]["n_rows_available"] == 40
    # Each model's figures are exactly its score on the common rows...
    on_common = tfidf[tfidf["row_id"].isin(common)]
    expected = score_predictions(on_common, LABELS, n_bootstrap=200, seed=7)
    assert (
        report["models"]["tfidf_logreg"]["accuracy"] == expected["metrics"]["accuracy"]
    )
    assert report["models"]["tfidf_logreg"]["accuracy"]["value"] == pytest.approx(0.5)
    # ...and the difference is the paired bootstrap on those rows.
    difference = paired_bootstrap_difference(
        fine_tuned[fine_tuned["row_id"].isin(common)],
        on_common,
        LABELS,
        n_bootstrap=200,
        seed=7,
    )
    assert report["models"]["tfidf_logreg"]["reference_minus_model"] == difference
    assert report["models"]["fine_tuned"]["reference_minus_model"] is None
    assert report["not_compared"] == {}


def test_a_clearly_better_reference_has_a_difference_interval_above_zero():
    rows = range(200)
    report = compare_on_common_rows(
        [
            Candidate(
                "fine_tuned", "fine-tuned model", frame(rows, wrong=range(0, 200, 20))
            ),
            Candidate("tfidf_logreg", "TF-IDF", frame(rows, wrong=range(0, 200, 3))),
            Candidate("same", "a copy", frame(rows, wrong=range(0, 200, 20))),
        ],
        LABELS,
        "fine_tuned",
        **SETTINGS,
    )
    better = report["models"]["tfidf_logreg"]["reference_minus_model"]["accuracy"]
    assert better["ci_low"] > 0 and better["value"] == pytest.approx(0.95 - 0.665)
    same = report["models"]["same"]["reference_minus_model"]
    assert same["accuracy"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    table = comparison_markdown(report)
    assert "| TF-IDF | 0.665 [" in table
    assert "fine-tuned model minus model, accuracy" in table
    assert "0.285 [" in table and "(reference)" in table


def test_models_that_did_not_run_or_cannot_be_compared_are_listed_with_the_reason():
    fine_tuned = frame(range(20))
    report = compare_on_common_rows(
        [
            Candidate("fine_tuned", "fine-tuned model", fine_tuned),
            Candidate("azure_openai", "Azure fine-tuned", None),
            Candidate("azure_openai_base", "Azure base", frame([0])[:0]),
            # an earlier run's file of another split: labels differ on shared rows
            Candidate("mlflow_serving", "served", frame(range(5), labels=[1] * 5)),
            Candidate("databricks_serving", "endpoint", frame(range(100, 110))),
        ],
        LABELS,
        "fine_tuned",
        **SETTINGS,
    )
    assert list(report["models"]) == ["fine_tuned"]
    assert report["n_common_rows"] == 20 and report["limited_to_common_rows"] == []
    reasons = {k: v["reason"] for k, v in report["not_compared"].items()}
    assert reasons["azure_openai"].startswith("not run")
    assert reasons["azure_openai_base"].startswith("not run")
    assert (
        "disagree with fine-tuned model's on 3 of 5 shared rows"
        in reasons["mlflow_serving"]
    )
    assert (
        reasons["databricks_serving"] == "no test row in common with fine-tuned model"
    )
    table = comparison_markdown(report)
    assert "## Not compared" in table and "- Azure fine-tuned: not run" in table


def test_without_the_reference_there_are_no_differences():
    report = compare_on_common_rows(
        [
            Candidate("fine_tuned", "fine-tuned model", None),
            Candidate("azure_openai_base", "Azure base", frame(range(10), wrong=[1])),
            Candidate("azure_openai", "Azure fine-tuned", frame(range(10))),
        ],
        LABELS,
        "fine_tuned",
        **SETTINGS,
    )
    assert report["reference"] is None
    assert all(m["reference_minus_model"] is None for m in report["models"].values())
    assert report["models"]["azure_openai"]["accuracy"]["value"] == 1.0
    assert "The reference model did not run" in comparison_markdown(report)
    metrics = comparison_metrics(report)
    assert metrics["azure_openai.accuracy"] == 1.0 and metrics["n_common_rows"] == 10
    assert not any("reference_minus_model" in key for key in metrics)


def test_a_broken_predictions_frame_is_an_error_naming_the_model():
    broken = frame(range(4)).assign(predicted_label=[0, 1, 5, 0])
    with pytest.raises(PredictionsError, match="tfidf_logreg predictions.*unknown"):
        compare_on_common_rows(
            [
                Candidate("fine_tuned", "fine-tuned model", frame(range(4))),
                Candidate("tfidf_logreg", "TF-IDF", broken),
            ],
            LABELS,
            "fine_tuned",
            **SETTINGS,
        )


def test_nothing_to_compare_still_gives_a_report():
    report = compare_on_common_rows(
        [Candidate("fine_tuned", "fine-tuned model", None)],
        LABELS,
        "fine_tuned",
        **SETTINGS,
    )
    assert report["models"] == {} and report["n_common_rows"] == 0
    assert "nothing to compare" in comparison_markdown(report)
