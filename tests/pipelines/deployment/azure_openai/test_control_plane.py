"""Deployments through azure-mgmt-cognitiveservices against the fake Resource Manager
(HTTPS: azure-core sends bearer tokens only over TLS): the long-running operation,
azure-core's retries, a failed deployment, and the PUT sent at most once."""

from __future__ import annotations

import json
import time

import pytest
from azure.core.exceptions import HttpResponseError

from llm_finetuning.pipelines.deployment.azure_openai.control_plane import (
    AzureDeployments,
    management_client,
)
from llm_finetuning.pipelines.deployment.azure_openai.waiting import (
    AzureOpenAIError,
    DeploymentFailed,
)
from tests.pipelines.deployment.azure_openai.conftest import (
    FakeTime,
    configured,
    credentials_for,
    deployments_for,
)

PUT = r"/deployments/ft-deploy$"


def test_deploy_polls_the_operation_until_it_succeeded_and_delete_waits(fake):
    deployments = deployments_for(fake, FakeTime())
    resource = deployments.deploy("gpt-4o-mini.ft-1")
    assert resource.properties.provisioning_state == "Succeeded"
    (put,) = fake.calls("PUT", PUT)
    assert put.query["api-version"] == ["2024-10-01"]
    assert put.headers["authorization"] == "Bearer fake-arm-token"
    assert json.loads(put.body)["properties"]["model"] == {
        "format": "OpenAI",
        "name": "gpt-4o-mini.ft-1",
        "version": "1",
    }
    assert json.loads(put.body)["sku"] == {"name": "standard", "capacity": 1}
    assert fake.calls("GET", "/operationResults/")  # followed Azure-AsyncOperation
    assert deployments.delete() is True and fake.deleted_deployments == ["ft-deploy"]
    assert deployments.delete() is False


def test_azure_core_retries_reads_on_429_with_retry_after_and_on_5xx(fake):
    deployments = deployments_for(fake, FakeTime())
    deployments.deploy("gpt-4o-mini.ft-1")
    fake.fail_next("GET", PUT, 429, {"Retry-After": "1"})
    fake.fail_next("GET", PUT, 503)
    started = time.monotonic()
    assert deployments.get().properties.provisioning_state == "Succeeded"
    assert time.monotonic() - started >= 1.0  # azure-core slept as asked
    assert len(fake.calls("GET", PUT)) >= 3


def test_reads_give_up_after_max_attempts(fake):
    deployments = deployments_for(fake, FakeTime(), retry={"initial_backoff_s": 0.01})
    fake.fail_next("GET", PUT, 500, times=10)
    with pytest.raises(HttpResponseError):
        deployments.get()
    assert len(fake.calls("GET", PUT)) == 4  # retry.max_attempts


def test_a_failed_deployment_raises_with_resource_managers_message(fake):
    fake.deployment_outcome = "Failed"
    deployments = deployments_for(fake, FakeTime())
    with pytest.raises(
        DeploymentFailed,
        match="failed: DeploymentFailed: The fine-tuned model is not available",
    ):
        deployments.deploy("gpt-4o-mini.ft-1")


def test_a_put_answered_5xx_is_sent_again_only_when_nothing_was_created(fake):
    clock = FakeTime()
    deployments = deployments_for(fake, clock)
    fake.fail_next("PUT", PUT, 503, {"Retry-After": "3"})
    deployments.deploy("gpt-4o-mini.ft-1")
    assert 3.0 in clock.sleeps  # our wait, not azure-core's: the PUT has no retries
    assert len(fake.calls("PUT", PUT)) == 2 and fake.deployment_puts == 1
    fake.fail_next("PUT", PUT, 500, times=10)
    with pytest.raises(AzureOpenAIError, match=r"after 4 attempt\(s\), and nothing"):
        deployments.deploy("gpt-4o-mini.ft-2")
    assert len(fake.calls("PUT", PUT)) == 6


def test_a_put_that_took_effect_is_not_sent_again_nor_on_rerun(fake):
    deployments = deployments_for(fake, FakeTime())
    fake.lose_answer("PUT", PUT, 500)
    assert deployments.deploy("gpt-4o-mini.ft-1").properties.provisioning_state == (
        "Succeeded"
    )
    assert fake.deployment_puts == 1 and len(fake.calls("PUT", PUT)) == 1
    deployments.deploy("gpt-4o-mini.ft-1")  # a rerun: the deployment is there already
    assert fake.deployment_puts == 1
    deployments.deploy("gpt-4o-mini.ft-2")  # another model: updated
    assert fake.deployment_puts == 2
    assert fake.deployments["ft-deploy"]["properties"]["model"]["name"] == (
        "gpt-4o-mini.ft-2"
    )


def test_without_a_token_azure_identity_authenticates_resource_manager(fake):
    from tests.pipelines.deployment.azure_openai.test_data_plane import FakeCredential

    credential = FakeCredential({f"{fake.url}/.default": fake.management_token})
    credentials = credentials_for(fake, management_token=None)
    params = configured(fake)
    deployments = AzureDeployments(
        management_client(credentials, params, credential), credentials, params
    )
    deployments.deploy("gpt-4o-mini.ft-1")
    assert f"{fake.url}/.default" in credential.scopes
