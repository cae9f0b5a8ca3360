"""End to end: the Kedro target against the fake serving API, failures and clean-up."""

from __future__ import annotations

import json
import logging

import mlflow
import pandas as pd
import pytest

from tests.pipelines.deployment_databricks_serving.fake_serving import TOKEN

REPORTING = "data/08_reporting/deployment"
PIPELINES = ["data_processing", "training", "deployment_databricks_serving"]


def read_json(root, relative):
    return json.loads((root / relative).read_text())


@pytest.fixture
def served_model(fake_serving):
    """The fake answers with the registered model itself, loaded from the registry."""
    loaded = {}

    def predict(texts):
        if "model" not in loaded:
            uri = "models:/main.llm_finetuning.llm_finetuning_text_classifier@champion"
            loaded["model"] = mlflow.pyfunc.load_model(uri)
        return loaded["model"].predict(pd.DataFrame({"text": texts}))

    fake_serving.predict = predict
    return fake_serving


@pytest.mark.slow
def test_registers_checks_serves_scores_and_deletes_the_endpoint(
    run_kedro, served_model, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    run_kedro(env="test", pipeline_names=PIPELINES)

    registered = read_json(
        tmp_path, "data/06_models/deployment/databricks_serving_registered_model.json"
    )
    assert registered["model_uri"] == (
        "models:/main.llm_finetuning.llm_finetuning_text_classifier@champion"
    )
    check = read_json(tmp_path, f"{REPORTING}/databricks_serving_predict_check.json")
    assert check["checked"] and check["env_manager"] == "local"
    endpoint = read_json(
        tmp_path, "data/06_models/deployment/databricks_serving_endpoint.json"
    )
    assert endpoint["created"] and endpoint["states"][-1] == "READY/NOT_UPDATING"
    assert endpoint["served_entities"] == [
        {
            "entity_name": "main.llm_finetuning.llm_finetuning_text_classifier",
            "entity_version": registered["version"],
        }
    ]
    metrics = read_json(tmp_path, f"{REPORTING}/databricks_serving_metrics.json")
    assert "roc_auc" in metrics["metrics"]
    cleanup = read_json(tmp_path, f"{REPORTING}/databricks_serving_cleanup_report.json")
    assert cleanup["deleted"] and cleanup["gone"]
    assert served_model.created == 1 and not served_model.endpoints
    assert served_model.calls("POST", "/serving-endpoints/.+/invocations")
    assert TOKEN not in caplog.text
    assert (tmp_path / REPORTING / "databricks_serving/confusion_matrix.png").is_file()


@pytest.mark.slow
def test_a_failed_config_update_stops_the_run_and_deletes_the_endpoint(
    run_kedro, served_model
):
    served_model.fail_next_update()
    with pytest.raises(Exception, match="UPDATE_FAILED"):
        run_kedro(env="test", pipeline_names=PIPELINES)
    assert served_model.created == 1 and not served_model.endpoints
