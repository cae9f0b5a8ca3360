"""The ``model_comparison`` node: candidates, latency and cost from the targets' files."""

from __future__ import annotations

import pytest

from llm_finetuning.pipelines.deployment.azure_openai.settings import AzureOpenAIParams
from llm_finetuning.pipelines.model_comparison.nodes import model_comparison
from tests.pipelines.model_comparison.test_report import LABELS, frame


def azure_frame(rows, latency, prompt_tokens=50, completion_tokens=1):
    predictions = frame(rows)
    predictions["latency_ms"] = float(latency)
    predictions["prompt_tokens"] = prompt_tokens
    predictions["completion_tokens"] = completion_tokens
    return predictions


def run_node(**models):
    inputs = dict.fromkeys(
        (
            "fine_tuned",
            "majority_class",
            "tfidf_logreg",
            "mlflow_serving",
            "databricks_serving",
            "azure_openai_base",
            "azure_openai",
            "training_metrics",
            "mlflow_serving_report",
            "databricks_serving_report",
            "azure_openai_fine_tuning_job",
        )
    )
    inputs.update(models)
    return model_comparison(
        **inputs,
        label_names=LABELS,
        scoring={"n_bootstrap": 50},
        report={"model_name": "GPT-2 fine-tuned"},
        azure_params=AzureOpenAIParams.model_validate(
            {
                "cost": {
                    "training_usd_per_million_tokens": 2.0,
                    "fine_tuned_input_usd_per_million_tokens": 0.2,
                    "fine_tuned_output_usd_per_million_tokens": 0.8,
                }
            }
        ),
        seed=0,
    )


def test_latency_and_cost_come_from_the_targets_records():
    comparison, table, metrics = run_node(
        fine_tuned=frame(range(30)),
        majority_class=frame(range(30), wrong=range(1, 30, 2)),
        mlflow_serving=frame(range(12)),
        azure_openai=azure_frame(range(12), latency=250),
        azure_openai_base=azure_frame(range(12), latency=180),
        training_metrics={"device": "cpu", "throughput": {"train_seconds": 77.3}},
        mlflow_serving_report={"latency_ms_p50": 12.5, "n_requests": 12},
        azure_openai_fine_tuning_job={"trained_tokens": 500_000},
    )
    models = comparison["models"]
    assert list(models) == [
        "fine_tuned",
        "majority_class",
        "mlflow_serving",
        "azure_openai_base",
        "azure_openai",
    ]
    assert comparison["n_common_rows"] == 12 and comparison["reference_name"] == (
        "GPT-2 fine-tuned"
    )
    assert models["mlflow_serving"]["latency_ms_per_prediction"] == 12.5
    assert models["azure_openai"]["latency_ms_per_prediction"] == 250
    assert models["fine_tuned"]["latency_ms_per_prediction"] is None
    assert models["fine_tuned"]["training_cost"]["seconds"] == pytest.approx(77.3)
    assert models["azure_openai"]["training_cost"]["usd"] == pytest.approx(1.0)
    # 1,000 x (50 x 0.2 + 1 x 0.8) / 1M
    per_1000 = models["azure_openai"]["cost_per_1000_predictions"]
    assert per_1000["usd"] == pytest.approx(0.0108)
    # The base model's prices are not set: tokens shown, no price.
    assert models["azure_openai_base"]["cost_per_1000_predictions"]["usd"] is None
    assert models["azure_openai_base"]["training_cost"]["usd"] == 0.0
    assert "tfidf_logreg" in comparison["not_compared"]
    assert "| served MLflow model |" in table and "12.5 (p50 of 12 requests)" in table
    assert "$1.00 (500,000 trained tokens" in table and "$0.011 (50 + 1.0" in table
    assert "77 s on cpu" in table
    assert metrics["azure_openai.training_cost_usd"] == {"value": 1.0, "step": 0}
    assert metrics["majority_class.reference_minus_model.accuracy"]["value"] == (
        pytest.approx(0.5)
    )
