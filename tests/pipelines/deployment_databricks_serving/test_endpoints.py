"""The SDK calls of the Model Serving target against the strict fake API."""

from __future__ import annotations

import pytest

from llm_finetuning.params import ParamsError
from llm_finetuning.pipelines.deployment_databricks_serving import endpoints
from llm_finetuning.pipelines.deployment_databricks_serving.params import (
    DatabricksServingParams,
    EndpointParams,
)

MODEL = "main.llm_finetuning.classifier"
FAST = EndpointParams(name="test-endpoint", poll_interval_s=0.01, ready_timeout_s=10)


def test_create_wait_query_both_formats_and_delete(fake_serving):
    client = endpoints.workspace_client(FAST)
    assert endpoints.create_or_update(client, MODEL, "1", FAST) is True
    waited = endpoints.wait_until_ready(client, FAST)
    assert waited["states"] == ["NOT_READY/IN_PROGRESS", "READY/NOT_UPDATING"]
    assert endpoints.served_version(client, FAST.name) == [
        {"entity_name": MODEL, "entity_version": "1"}
    ]
    (body,) = fake_serving.calls("POST", "/api/2.0/serving-endpoints")
    (entity,) = body["config"]["served_entities"]
    assert entity == {
        "entity_name": MODEL,
        "entity_version": "1",
        "workload_size": "Small",
        "scale_to_zero_enabled": True,
    }
    split = endpoints.query(client, FAST.name, ["good film", "bad film"])
    inputs = endpoints.query(
        client, FAST.name, ["good film", "bad film"], as_inputs=True
    )
    assert (
        split["predicted_label"].tolist()
        == inputs["predicted_label"].tolist()
        == [1, 0]
    )
    assert endpoints.delete(client, FAST.name) is True
    assert endpoints.find_endpoint(client, FAST.name) is None
    assert endpoints.delete(client, FAST.name) is False


def test_an_existing_endpoint_gets_a_config_update(fake_serving):
    client = endpoints.workspace_client(FAST)
    endpoints.create_or_update(client, MODEL, "1", FAST)
    endpoints.wait_until_ready(client, FAST)
    assert endpoints.create_or_update(client, MODEL, "2", FAST) is False
    (update,) = fake_serving.calls(
        "PUT", "/api/2.0/serving-endpoints/test-endpoint/config"
    )
    assert update["served_entities"][0]["entity_version"] == "2"
    endpoints.wait_until_ready(client, FAST)
    assert endpoints.served_version(client, FAST.name)[0]["entity_version"] == "2"
    assert fake_serving.created == 1
    endpoints.delete(client, FAST.name)


def test_429_and_503_are_retried_by_the_sdk(fake_serving):
    client = endpoints.workspace_client(FAST)
    fake_serving.fail_next("POST", "/api/2.0/serving-endpoints", 429)
    fake_serving.fail_next("GET", "/api/2.0/serving-endpoints/test-endpoint", 503)
    endpoints.create_or_update(client, MODEL, "1", FAST)
    endpoints.wait_until_ready(client, FAST)
    fake_serving.fail_next("POST", "/serving-endpoints/test-endpoint/invocations", 429)
    assert len(endpoints.query(client, FAST.name, ["good"])) == 1
    assert fake_serving.created == 1
    endpoints.delete(client, FAST.name)


def test_a_create_answered_500_after_it_took_effect_is_not_sent_again(fake_serving):
    client = endpoints.workspace_client(FAST)
    fake_serving.fail_next("POST", "/api/2.0/serving-endpoints", 500, took_effect=True)
    assert endpoints.create_or_update(client, MODEL, "1", FAST) is True
    assert fake_serving.created == 1
    assert len(fake_serving.calls("POST", "/api/2.0/serving-endpoints")) == 1
    endpoints.wait_until_ready(client, FAST)
    endpoints.delete(client, FAST.name)


def test_a_create_answered_500_before_it_took_effect_raises(fake_serving):
    from databricks.sdk.errors import DatabricksError

    client = endpoints.workspace_client(FAST)
    fake_serving.fail_next("POST", "/api/2.0/serving-endpoints", 500)
    with pytest.raises(DatabricksError):
        endpoints.create_or_update(client, MODEL, "1", FAST)
    assert not fake_serving.endpoints


def test_a_failed_config_update_raises_with_the_states(fake_serving):
    client = endpoints.workspace_client(FAST)
    fake_serving.fail_next_update()
    endpoints.create_or_update(client, MODEL, "1", FAST)
    with pytest.raises(endpoints.EndpointNotReady, match="UPDATE_FAILED"):
        endpoints.wait_until_ready(client, FAST)
    endpoints.delete(client, FAST.name)


def test_the_fake_refuses_what_the_real_api_refuses(fake_serving):
    from databricks.sdk.errors import BadRequest

    client = endpoints.workspace_client(FAST)
    with pytest.raises(BadRequest, match="catalog"):
        endpoints.create_or_update(client, "classifier", "1", FAST)
    bad_name = EndpointParams.model_construct(
        **{**FAST.model_dump(), "name": "no spaces"}
    )
    with pytest.raises(BadRequest, match="name"):
        endpoints.create_or_update(client, MODEL, "1", bad_name)
    assert fake_serving.created == 0


def test_a_wrong_token_is_refused(fake_serving, monkeypatch):
    from databricks.sdk.errors import DatabricksError

    monkeypatch.setenv("DATABRICKS_TOKEN", "wrong")
    client = endpoints.workspace_client(FAST)
    with pytest.raises(DatabricksError):
        endpoints.find_endpoint(client, FAST.name)


def test_parameters_check_names_and_unity_catalog_models():
    with pytest.raises(ParamsError, match="registered_model_name"):
        DatabricksServingParams.model_validate({"registered_model_name": "flat_name"})
    with pytest.raises(ParamsError, match="endpoint.name"):
        DatabricksServingParams.model_validate({"endpoint": {"name": "has space"}})
    with pytest.raises(ParamsError, match="workload_size"):
        DatabricksServingParams.model_validate({"endpoint": {"workload_size": "Huge"}})
