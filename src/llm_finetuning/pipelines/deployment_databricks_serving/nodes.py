"""Nodes of ``deployment_databricks_serving``: register -> check -> serve -> query ->
(score, by the evaluation's scoring pipeline) -> clean up.

Every node that runs while an endpoint exists deletes it when it fails (unless
``endpoint.keep``): a failed run never leaves a billed endpoint behind.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llm_finetuning.datasets.model_folder import TextClassifier
from llm_finetuning.metrics import flatten_metrics
from llm_finetuning.models import ModelParams
from llm_finetuning.pipelines.deployment.mlflow_serving import (
    MlflowTargetParams,
    log_and_register,
)
from llm_finetuning.pipelines.deployment_databricks_serving import endpoints
from llm_finetuning.pipelines.deployment_databricks_serving.params import (
    DatabricksServingParams,
)
from llm_finetuning.predictions import (
    LABEL,
    PREDICTED_LABEL,
    ROW_ID,
    predictions_frame,
    probability_columns,
)

# MLflow and scikit-learn load in the nodes that use them (and the Databricks SDK in
# ``endpoints``' functions), so building the pipelines does not import them.

logger = logging.getLogger(__name__)

INPUT_EXAMPLE_CHARS = 300


def register_uc_model(
    fine_tuned_model: TextClassifier,
    test_reviews: pd.DataFrame,
    serving: DatabricksServingParams,
    model: ModelParams,
) -> dict[str, Any]:
    """Log the model as an MLflow pyfunc, register it and point ``alias`` at it.

    Returns:
        ``registered_model_name``, ``version``, ``alias``, ``model_uri``
        (``models:/<catalog>.<schema>.<model>@<alias>``), ``run_id``, requirements.
    """
    import mlflow

    if serving.registry_uri:
        mlflow.set_registry_uri(serving.registry_uri)
    examples = [text[:INPUT_EXAMPLE_CHARS] for text in test_reviews["text"].head(2)]
    # The same pyfunc packaging as the MLflow target; Unity Catalog adds the alias.
    record = log_and_register(
        fine_tuned_model,
        MlflowTargetParams(
            registered_model_name=serving.registered_model_name,
            artifact_name=serving.artifact_name,
            batch_size=serving.batch_size,
            pip_requirements=serving.pip_requirements,
            max_request_bytes=serving.max_request_bytes,
        ),
        examples,
        max_length=model.max_length,
        truncation=model.truncation,
        head_tokens=model.head_tokens,
    )
    mlflow.MlflowClient().set_registered_model_alias(
        serving.registered_model_name, serving.alias, record["version"]
    )
    model_uri = f"models:/{serving.registered_model_name}@{serving.alias}"
    logger.info(
        "Registered %s version %s as %s",
        serving.registered_model_name,
        record["version"],
        model_uri,
    )
    return {**record, "alias": serving.alias, "model_uri": model_uri}


def sample_test_reviews(
    test_reviews: pd.DataFrame, serving: DatabricksServingParams, seed: int
) -> pd.DataFrame:
    """At most ``sample_size`` test reviews, stratified by label, sorted by ``row_id``."""
    size = serving.sample_size
    if size is None or size >= len(test_reviews):
        sample = test_reviews
    else:
        counts = test_reviews[LABEL].value_counts()
        stratify = (
            test_reviews[LABEL] if counts.min() >= 2 and size >= len(counts) else None
        )
        from sklearn.model_selection import train_test_split

        sample, _ = train_test_split(
            test_reviews, train_size=size, stratify=stratify, random_state=seed
        )
    return sample.sort_values(ROW_ID).reset_index(drop=True)


def check_with_mlflow_predict(
    registered_model: dict[str, Any],
    sample: pd.DataFrame,
    serving: DatabricksServingParams,
) -> dict[str, Any]:
    """``mlflow.models.predict`` on the alias URI, in an isolated environment.

    What Model Serving will do (install the logged requirements, load the model, score)
    before paying for an endpoint; ``predict_check.enabled: false`` skips it.

    Raises:
        ValueError: the predictions lack columns or rows.
    """
    check = serving.predict_check
    if not check.enabled:
        logger.warning("mlflow.models.predict check skipped (predict_check.enabled)")
        return {"checked": False, "env_manager": check.env_manager}
    import mlflow

    texts = sample["text"].head(check.n_examples).tolist()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llm_finetuning_predict_") as folder:
        output = Path(folder) / "predictions.json"
        mlflow.models.predict(
            model_uri=registered_model["model_uri"],
            input_data=pd.DataFrame({"text": texts}),
            content_type="json",
            output_path=str(output),
            env_manager=check.env_manager,
        )
        answer = json.loads(output.read_text())
    rows = answer.get("predictions", answer) if isinstance(answer, dict) else answer
    frame = pd.DataFrame(rows)
    expected = {
        PREDICTED_LABEL,
        "label_name",
        *probability_columns(registered_model["label_names"]),
    }
    if len(frame) != len(texts) or not expected <= set(frame.columns):
        raise ValueError(
            f"mlflow.models.predict on {registered_model['model_uri']} answered "
            f"{len(frame)} rows with columns {list(frame.columns)}; expected "
            f"{len(texts)} rows with {sorted(expected)}"
        )
    logger.info(
        "mlflow.models.predict (%s) answered %d reviews", check.env_manager, len(frame)
    )
    return {
        "checked": True,
        "env_manager": check.env_manager,
        "model_uri": registered_model["model_uri"],
        "n_reviews": len(frame),
        "seconds": round(time.monotonic() - started, 3),
    }


def _delete_unless_kept(client: Any, serving: DatabricksServingParams) -> None:
    """Delete the endpoint after a failure (never raises: the failure is the news)."""
    if serving.endpoint.keep:
        logger.warning(
            "Endpoint %s kept after the failure (endpoint.keep)", serving.endpoint.name
        )
        return
    try:
        endpoints.delete(client, serving.endpoint.name)
    except Exception:  # noqa: BLE001
        logger.exception(
            "Could not delete endpoint %s: delete it by hand", serving.endpoint.name
        )


def deploy_serving_endpoint(
    registered_model: dict[str, Any],
    predict_check: dict[str, Any],
    serving: DatabricksServingParams,
) -> dict[str, Any]:
    """Create or update the endpoint to serve the alias's version; wait until ready.

    ``predict_check`` is an input so that serving waits for the check.
    """
    client = endpoints.workspace_client(serving.endpoint)
    created = None
    try:
        created = endpoints.create_or_update(
            client,
            registered_model["registered_model_name"],
            registered_model["version"],
            serving.endpoint,
        )
        waited = endpoints.wait_until_ready(client, serving.endpoint)
        served = endpoints.served_version(client, serving.endpoint.name)
    except BaseException:
        if created is not False:  # created here, or unknown: do not leave it billed
            _delete_unless_kept(client, serving)
        raise
    wanted = {
        "entity_name": registered_model["registered_model_name"],
        "entity_version": registered_model["version"],
    }
    if wanted not in served:
        _delete_unless_kept(client, serving) if created else None
        raise endpoints.EndpointNotReady(
            f"Endpoint {serving.endpoint.name} is ready but serves {served}, not {wanted}"
        )
    return {
        "name": serving.endpoint.name,
        "created": created,
        "served_entities": served,
        "workload_size": serving.endpoint.workload_size,
        "workload_type": serving.endpoint.workload_type,
        "scale_to_zero_enabled": serving.endpoint.scale_to_zero_enabled,
        "predict_checked": predict_check.get("checked", False),
        **waited,
    }


def query_serving_endpoint(
    endpoint: dict[str, Any],
    sample: pd.DataFrame,
    label_names: list[str],
    serving: DatabricksServingParams,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Send the sampled test reviews to the endpoint; predictions in evaluation's shape.

    The first batch is sent twice, as ``dataframe_split`` and as ``inputs``: both
    formats must answer alike.

    Returns:
        The served predictions (``test_predictions`` schema) and a report (latency
        p50/p95, throughput).
    """
    client = endpoints.workspace_client(serving.endpoint)
    texts = sample["text"].tolist()
    size = serving.endpoint.request_batch_size
    try:
        answers, latencies = [], []
        started = time.monotonic()
        for start in range(0, len(texts), size):
            sent = time.monotonic()
            answers.append(
                endpoints.query(client, endpoint["name"], texts[start : start + size])
            )
            latencies.append((time.monotonic() - sent) * 1000)
        elapsed = time.monotonic() - started
        first = texts[:size]
        as_inputs = endpoints.query(client, endpoint["name"], first, as_inputs=True)
        served = pd.concat(answers, ignore_index=True)
        columns = probability_columns(label_names)
        missing = {PREDICTED_LABEL, *columns} - set(served.columns)
        if missing:
            raise ValueError(
                f"Endpoint {endpoint['name']} answered without column(s) "
                f"{sorted(missing)}: {list(served.columns)}"
            )
        if not np.allclose(
            as_inputs[columns].to_numpy(dtype=float),
            served[columns].head(len(first)).to_numpy(dtype=float),
            atol=1e-6,
        ):
            raise ValueError(
                f"Endpoint {endpoint['name']} answers 'inputs' and 'dataframe_split' "
                "requests differently"
            )
    except BaseException:
        _delete_unless_kept(client, serving)
        raise
    predictions = predictions_frame(
        sample[ROW_ID],
        sample[LABEL],
        label_names,
        probabilities=served[columns].to_numpy(dtype=float),
        predicted_labels=served[PREDICTED_LABEL].to_numpy(dtype=int),
    )
    report = {
        "endpoint": endpoint["name"],
        "n_reviews": len(texts),
        "n_requests": len(latencies),
        "latency_ms_p50": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_ms_p95": float(np.percentile(latencies, 95)) if latencies else None,
        "throughput_reviews_per_s": len(texts) / elapsed if elapsed > 0 else None,
        "formats": ["dataframe_split", "inputs"],
    }
    logger.info(
        "Endpoint %s answered %d reviews in %d requests",
        endpoint["name"],
        len(texts),
        len(latencies),
    )
    return predictions, report


def clean_up_databricks_serving(
    endpoint: dict[str, Any],
    served_metrics: dict[str, Any],
    serving: DatabricksServingParams,
) -> dict[str, Any]:
    """Delete the endpoint unless ``endpoint.keep``; check that it is gone.

    ``served_metrics`` is an input only so that clean-up runs after scoring.
    """
    if serving.endpoint.keep:
        logger.warning(
            "Endpoint %s kept serving (endpoint.keep): it is billed while it runs; "
            "delete it with `databricks serving-endpoints delete %s`",
            endpoint["name"],
            endpoint["name"],
        )
        return {"endpoint": endpoint["name"], "kept": True, "deleted": False}
    client = endpoints.workspace_client(serving.endpoint)
    deleted = endpoints.delete(client, endpoint["name"])
    gone = endpoints.find_endpoint(client, endpoint["name"]) is None
    if not gone:
        raise RuntimeError(f"Endpoint {endpoint['name']} still exists after deletion")
    return {
        "endpoint": endpoint["name"],
        "kept": False,
        "deleted": deleted,
        "gone": gone,
    }


def databricks_serving_metrics(
    serving_report: dict[str, Any], served_metrics: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Latency, throughput and test metrics, in kedro-mlflow's metrics format."""
    flat = {
        f"serving.{key}": float(serving_report[key])
        for key in ("latency_ms_p50", "latency_ms_p95", "throughput_reviews_per_s")
        if serving_report.get(key) is not None
    }
    flat.update(flatten_metrics(served_metrics, "test"))
    return {key: {"value": value, "step": 0} for key, value in flat.items()}
