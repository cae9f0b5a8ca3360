"""The evaluation pipeline through Kedro: catalog, MLflow, kedro-viz previews, reuse."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import pipeline
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from matplotlib.figure import Figure

from llm_finetuning.pipelines.evaluation.pipeline import create_scoring_pipeline
from llm_finetuning.predictions import predictions_frame

REPORTS = {
    "evaluation_metrics": "evaluation_metrics.json",
    "baseline_comparison": "baseline_comparison.json",
    "baseline_comparison_table": "baseline_comparison.md",
    "error_analysis": "error_analysis.csv",
    "accuracy_by_length": "accuracy_by_length.csv",
    "confusion_matrix_plot": "plots/confusion_matrix.png",
    "roc_curve_plot": "plots/roc_curve.png",
    "reliability_diagram": "plots/reliability_diagram.png",
    "accuracy_by_length_plot": "plots/accuracy_by_length.png",
}


@pytest.mark.slow
def test_test_env_runs_data_processing_training_and_evaluation(
    run_kedro, tmp_path, project_root
):
    run_kedro(env="test", pipeline_names=["data_processing", "training", "evaluation"])
    reporting = tmp_path / "data" / "08_reporting"
    test_reviews = pd.read_parquet(tmp_path / "data/03_primary/test_reviews.parquet")

    predictions = pd.read_parquet(
        tmp_path / "data/07_model_output/test_predictions.parquet"
    )
    assert list(predictions.columns) == [
        "row_id",
        "label",
        "predicted_label",
        "prob_negative",
        "prob_positive",
    ]
    assert sorted(predictions["row_id"]) == sorted(test_reviews["row_id"])
    probabilities = predictions[["prob_negative", "prob_positive"]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)

    metrics = json.loads((reporting / "evaluation_metrics.json").read_text())
    assert metrics["n_examples"] == len(test_reviews)
    for name in ("accuracy", "f1_macro", "roc_auc", "log_loss"):
        entry = metrics["metrics"][name]
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name
    comparison = json.loads((reporting / "baseline_comparison.json").read_text())
    assert list(comparison["models"]) == [
        "fine-tuned model",
        "majority_class",
        "tfidf_logreg",
    ]
    table = (reporting / "baseline_comparison.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 5  # header, separator, three models
    # The model comparison (appended to the evaluation): no deployed model has run.
    models = json.loads((reporting / "model_comparison.json").read_text())
    assert list(models["models"]) == ["fine_tuned", "majority_class", "tfidf_logreg"]
    assert models["n_common_rows"] == len(test_reviews)
    assert models["not_compared"]["mlflow_serving"]["reason"].startswith("not run")
    mistakes = pd.read_csv(reporting / "error_analysis.csv")
    assert set(mistakes["row_id"]) <= set(test_reviews["row_id"])
    for png in (
        "confusion_matrix",
        "roc_curve",
        "reliability_diagram",
        "accuracy_by_length",
    ):
        assert (reporting / f"{png}.png").stat().st_size > 5_000, png

    # MLflow holds the reports as artifacts and the scalars as metrics.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    client = mlflow.MlflowClient()
    logged = {
        a.path
        for folder in ("evaluation", "evaluation/plots", "evaluation/baselines")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    for path in REPORTS.values():
        assert f"evaluation/{path}" in logged, path
    run_metrics = client.get_run(run.info.run_id).data.metrics
    assert run_metrics["evaluation.test.accuracy"] == pytest.approx(
        metrics["metrics"]["accuracy"]["value"]
    )
    assert "evaluation.test.accuracy.ci_low" in run_metrics
    assert "evaluation.comparison.tfidf_logreg.accuracy" in run_metrics

    # kedro-viz previews the reports (it calls each dataset's preview()).
    with KedroSession.create(
        project_path=tmp_path, env="test", conf_source=str(project_root / "conf")
    ) as session:
        catalog = session.load_context().catalog
        for name in REPORTS:
            if name == "baseline_comparison_table":
                continue  # text.TextDataset has no preview; the JSON twin does
            preview = catalog.get(name).preview()
            assert preview, name
        assert (
            catalog.get("test_predictions").preview(nrows=3)["columns"][0] == "row_id"
        )

    # `kedro run --pipeline evaluation` on its own reads everything from the catalog.
    (reporting / "evaluation_metrics.json").unlink()
    run_kedro(env="test", pipeline_names=["evaluation"])
    again = json.loads((reporting / "evaluation_metrics.json").read_text())
    assert again["metrics"]["accuracy"] == metrics["metrics"]["accuracy"]


def test_scoring_pipeline_scores_a_label_only_classifier_under_a_namespace(
    test_reviews, label_names, tmp_path
):
    """How the deployment scores the Azure OpenAI model: same nodes, own namespace."""
    labels = test_reviews["label"].to_numpy()
    answers = labels.copy()
    answers[:3] = -1  # unparseable chat answers
    answers[3:5] = 1 - labels[3:5]
    scoring = pipeline(
        create_scoring_pipeline(),
        namespace="azure_openai",
        inputs={"test_reviews", "label_names"},
        parameters={
            "params:evaluation.scoring": "params:evaluation.scoring",
            "params:runtime.seed": "params:runtime.seed",
            "params:evaluation.report": "params:azure_openai.report",
        },
    )
    inputs = {
        "azure_openai.test_predictions": predictions_frame(
            test_reviews["row_id"], labels, label_names, predicted_labels=answers
        ),
        "test_reviews": test_reviews,
        "label_names": label_names,
        "params:evaluation.scoring": {"n_bootstrap": 50},
        "params:runtime.seed": 0,
        "params:azure_openai.report": {
            "model_name": "Azure OpenAI",
            "top_k_mistakes": 10,
        },
    }
    # The runner releases memory datasets once consumed: persist the metrics.
    metrics_file = JSONDataset(filepath=str(tmp_path / "azure_openai_metrics.json"))
    catalog = DataCatalog(
        {name: MemoryDataset(value) for name, value in inputs.items()}
        | {"azure_openai.evaluation_metrics": metrics_file}
        | {
            name: MemoryDataset()
            for name in (
                "azure_openai.error_analysis",
                "azure_openai.roc_curve_plot",
                "azure_openai.confusion_matrix_plot",
            )
        }
    )
    SequentialRunner().run(scoring, catalog)

    metrics = catalog.load("azure_openai.evaluation_metrics")
    n = len(labels)
    assert metrics["metrics"]["accuracy"]["value"] == pytest.approx((n - 5) / n)
    assert metrics["n_invalid_predictions"] == 3
    assert "roc_auc" in metrics["skipped"]
    mistakes = catalog.load("azure_openai.error_analysis")
    assert sorted(mistakes["predicted"].tolist()).count("<invalid>") == 3
    assert isinstance(catalog.load("azure_openai.roc_curve_plot"), Figure)
    title = catalog.load("azure_openai.confusion_matrix_plot").axes[0].get_title()
    assert "Azure OpenAI" in title and "3 invalid" in title
