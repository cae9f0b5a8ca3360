"""The ``model_comparison`` node: every model's predictions -> one report.

Each input is read through ``<dataset>@optional`` (``OptionalDataset``): ``None`` when
that model did not run. The candidates are, in the report's order: the fine-tuned
model (the reference), the majority class and TF-IDF + logistic regression baselines,
the served MLflow model, the Databricks serving endpoint, the Azure OpenAI base model
zero-shot ("before fine-tuning") and the Azure OpenAI fine-tuned model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from llm_finetuning.pipelines.deployment.azure_openai.settings import (
    AzureOpenAIParams,
    CostParams,
)
from llm_finetuning.pipelines.evaluation.params import ReportParams, ScoringParams
from llm_finetuning.pipelines.model_comparison.report import (
    Candidate,
    compare_on_common_rows,
    comparison_markdown,
    comparison_metrics,
)

logger = logging.getLogger(__name__)

REFERENCE = "fine_tuned"


def _local_training(training_metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """Wall-clock training time of the local fine-tuning (no price: own hardware)."""
    throughput = (training_metrics or {}).get("throughput") or {}
    seconds = throughput.get("train_seconds")
    if seconds is None:
        return None
    device = training_metrics.get("device", "?")
    return {
        "usd": None,
        "seconds": float(seconds),
        "device": device,
        "text": f"{float(seconds):.0f} s on {device} (no price: own hardware)",
    }


def _served_latency(
    serving_report: dict[str, Any] | None,
) -> tuple[float | None, str | None]:
    """The p50 latency of a serving smoke test (one review a request)."""
    if not serving_report or serving_report.get("latency_ms_p50") is None:
        return None, None
    n = serving_report.get("n_requests", serving_report.get("n_reviews"))
    return float(serving_report["latency_ms_p50"]), f"p50 of {n} requests"


def _azure_latency(frame: pd.DataFrame | None) -> tuple[float | None, str | None]:
    """The median latency of the chat completions, where the frame recorded it."""
    if frame is None or "latency_ms" not in frame or frame["latency_ms"].isna().all():
        return None, None
    values = frame["latency_ms"].dropna()
    return float(values.median()), f"p50 of {len(values)} requests"


def _azure_training(
    job: dict[str, Any] | None, cost: CostParams
) -> dict[str, Any] | None:
    """Trained tokens (from the finished job) times the configured training price."""
    tokens = (job or {}).get("trained_tokens")
    if tokens is None:
        return None
    usd = tokens * cost.training_usd_per_million_tokens / 1e6
    return {
        "usd": usd,
        "trained_tokens": int(tokens),
        "text": f"${usd:.2f} ({int(tokens):,} trained tokens at "
        f"${cost.training_usd_per_million_tokens:g}/1M; hosting "
        f"${cost.hosting_usd_per_hour:g}/h while deployed)",
    }


def _per_1000(
    frame: pd.DataFrame | None, input_price: float | None, output_price: float | None
) -> dict[str, Any] | None:
    """Mean billed tokens per request times the configured per-token prices."""
    if frame is None or not {"prompt_tokens", "completion_tokens"} <= set(frame):
        return None
    prompt = frame["prompt_tokens"].dropna()
    completion = frame["completion_tokens"].dropna()
    if prompt.empty or completion.empty:
        return None
    tokens = f"{prompt.mean():.0f} + {completion.mean():.1f} tokens a request"
    if input_price is None or output_price is None:
        return {"usd": None, "text": f"n/a (prices not set; {tokens})"}
    usd = 1000 * (prompt.mean() * input_price + completion.mean() * output_price) / 1e6
    return {"usd": float(usd), "text": f"${usd:.3f} ({tokens})"}


def model_comparison(
    *,
    fine_tuned: pd.DataFrame | None,
    majority_class: pd.DataFrame | None,
    tfidf_logreg: pd.DataFrame | None,
    mlflow_serving: pd.DataFrame | None,
    databricks_serving: pd.DataFrame | None,
    azure_openai_base: pd.DataFrame | None,
    azure_openai: pd.DataFrame | None,
    training_metrics: dict[str, Any] | None,
    mlflow_serving_report: dict[str, Any] | None,
    databricks_serving_report: dict[str, Any] | None,
    azure_openai_fine_tuning_job: dict[str, Any] | None,
    label_names: list[str],
    scoring: ScoringParams,
    report: ReportParams,
    azure_params: AzureOpenAIParams,
    seed: int,
) -> tuple[dict[str, Any], str, dict[str, dict[str, float]]]:
    """Every model that has predictions, scored on the test rows all of them answered.

    Returns:
        The report (JSON), the same as a Markdown page, and its scalars in
        kedro-mlflow's ``MlflowMetricsHistoryDataset`` format.
    """
    config = ScoringParams.model_validate(scoring)
    cost = AzureOpenAIParams.model_validate(azure_params).cost
    mlflow_latency = _served_latency(mlflow_serving_report)
    databricks_latency = _served_latency(databricks_serving_report)
    candidates = [
        Candidate(
            REFERENCE,
            ReportParams.model_validate(report).model_name,
            fine_tuned,
            training_cost=_local_training(training_metrics),
        ),
        Candidate("majority_class", "majority class", majority_class),
        Candidate("tfidf_logreg", "TF-IDF + logistic regression", tfidf_logreg),
        Candidate(
            "mlflow_serving",
            "served MLflow model",
            mlflow_serving,
            *mlflow_latency,
            notes=["the fine-tuned model behind a local MLflow server"],
        ),
        Candidate(
            "databricks_serving",
            "Databricks serving endpoint",
            databricks_serving,
            *databricks_latency,
        ),
        Candidate(
            "azure_openai_base",
            "Azure OpenAI base model, zero-shot",
            azure_openai_base,
            *_azure_latency(azure_openai_base),
            training_cost={"usd": 0.0, "text": "none (not fine-tuned)"},
            cost_per_1000_predictions=_per_1000(
                azure_openai_base,
                cost.base_input_usd_per_million_tokens,
                cost.base_output_usd_per_million_tokens,
            ),
        ),
        Candidate(
            "azure_openai",
            "Azure OpenAI fine-tuned model",
            azure_openai,
            *_azure_latency(azure_openai),
            training_cost=_azure_training(azure_openai_fine_tuning_job, cost),
            cost_per_1000_predictions=_per_1000(
                azure_openai,
                cost.fine_tuned_input_usd_per_million_tokens,
                cost.fine_tuned_output_usd_per_million_tokens,
            ),
        ),
    ]
    comparison = compare_on_common_rows(
        candidates,
        label_names,
        REFERENCE,
        n_bootstrap=config.n_bootstrap,
        confidence_level=config.confidence_level,
        seed=seed,
    )
    table = comparison_markdown(comparison)
    logger.info("Model comparison:\n%s", table)
    metrics = {
        key: {"value": value, "step": 0}
        for key, value in comparison_metrics(comparison).items()
        if np.isfinite(value)
    }
    return comparison, table, metrics
