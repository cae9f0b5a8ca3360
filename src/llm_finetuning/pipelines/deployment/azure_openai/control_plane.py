"""Deployments of the fine-tuned model through Azure Resource Manager, with
``azure-mgmt-cognitiveservices``' ``CognitiveServicesManagementClient``.

``deployments.get`` and the long-running operations' polls are retried by azure-core's
retry policy (429, 408, 5xx, connection errors; ``Retry-After`` honoured); the poller
(``ARMPolling``) follows the ``Azure-AsyncOperation`` URL until the deployment has
succeeded or failed. The PUT that creates the deployment goes out with
``retry_total=0`` through :func:`~.waiting.create_at_most_once`: after a 5xx or a
timeout it checks whether the deployment exists with this model before sending it
again, and a deployment that already deploys the model (an earlier run's) gets no PUT.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.polling import LROPoller
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
from azure.mgmt.cognitiveservices.models import (
    Deployment,
    DeploymentModel,
    DeploymentProperties,
    Sku,
)
from azure.mgmt.core.polling.arm_polling import ARMPolling

from llm_finetuning.pipelines.deployment.azure_openai.credentials import (
    AzureCredentials,
    management_credential,
)
from llm_finetuning.pipelines.deployment.azure_openai.settings import (
    AzureOpenAIParams,
    PollParams,
)
from llm_finetuning.pipelines.deployment.azure_openai.waiting import (
    AzureTimeout,
    Clock,
    DeploymentFailed,
    Sleep,
    create_at_most_once,
    poll,
)

logger = logging.getLogger(__name__)

# Provisioning states after which a deployment is no use.
DEPLOYMENT_FAILED_STATES = ("Failed", "Canceled")


def management_client(
    credentials: AzureCredentials,
    settings: AzureOpenAIParams,
    credential: TokenCredential | None = None,
) -> CognitiveServicesManagementClient:
    """The Resource Manager client for the resource's subscription, with azure-core's
    retries and timeouts from ``retry``."""
    credentials.require(
        "subscription_id",
        "resource_group",
        "account_name",
        purpose="Deploying through Azure Resource Manager",
    )
    endpoint = settings.deployment.management_endpoint.rstrip("/")
    retry = settings.retry
    return CognitiveServicesManagementClient(
        credential or management_credential(credentials),
        credentials.subscription_id,
        base_url=endpoint,
        credential_scopes=[f"{endpoint}/.default"],
        api_version=settings.deployment.arm_api_version,
        retry_total=retry.max_attempts - 1,
        retry_backoff_factor=retry.initial_backoff_s,
        retry_backoff_max=retry.max_backoff_s,
        connection_timeout=retry.request_timeout_s,
        read_timeout=retry.request_timeout_s,
    )


def deployment_record(resource: Deployment) -> dict[str, Any]:
    """What the catalog keeps of a deployment resource."""
    properties = resource.properties
    return {
        "deployment": resource.name,
        "model": properties.model.name if properties and properties.model else None,
        "provisioning_state": properties.provisioning_state if properties else None,
        "sku": resource.sku.as_dict() if resource.sku else None,
        "resource_id": resource.id,
    }


class AzureDeployments:
    """Create, read and delete deployments of one Azure OpenAI resource.

    Args:
        client: The Resource Manager client (:func:`management_client`).
        credentials: For the resource group and account name.
        settings: The ``deployment.azure_openai`` parameters.
        sleep, clock: Waits of :func:`create_at_most_once` and of waiting for a
            deployment found in progress; injected in tests.
    """

    def __init__(
        self,
        client: CognitiveServicesManagementClient,
        credentials: AzureCredentials,
        settings: AzureOpenAIParams,
        *,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.client = client
        self._where = (credentials.resource_group, credentials.account_name)
        self.settings = settings
        self._sleep = sleep
        self._clock = clock

    def _polling(self) -> ARMPolling:
        return ARMPolling(
            self.settings.deployment.poll.interval_s,
            lro_options={"final-state-via": "azure-async-operation"},
        )

    def get(self, name: str | None = None) -> Deployment | None:
        """The deployment, or ``None`` when there is none of that name."""
        try:
            return self.client.deployments.get(
                *self._where, name or self.settings.deployment.name
            )
        except ResourceNotFoundError:
            return None

    def _deploys(self, resource: Deployment | None, model: str) -> bool:
        """Whether ``resource`` deploys ``model`` (this version) and has not failed:
        one to wait for or use, not to create again."""
        if resource is None or resource.properties is None:
            return False
        deployed = resource.properties.model
        return (
            deployed is not None
            and deployed.name == model
            and str(deployed.version) == str(self.settings.deployment.model_version)
            and resource.properties.provisioning_state not in DEPLOYMENT_FAILED_STATES
        )

    def _deploying(self, model: str) -> Deployment | None:
        """The deployment if it deploys ``model``: what an unanswered PUT created."""
        resource = self.get()
        return resource if self._deploys(resource, model) else None

    def deploy(self, model: str) -> Deployment:
        """Create or update the deployment of ``model``; wait until it has succeeded.

        Raises:
            DeploymentFailed: ``Failed`` or ``Canceled``, with Resource Manager's message.
            AzureTimeout: past ``deployment.poll.timeout_s``.
        """
        d = self.settings.deployment
        existing = self.get()
        if self._deploys(existing, model):
            logger.info(
                "Deployment %s of %s exists (%s): using it",
                d.name,
                model,
                existing.properties.provisioning_state,
            )
            return self._wait_until_provisioned(model)
        if existing is not None:
            logger.info(
                "Deployment %s exists with %s (%s): updating it to %s",
                d.name,
                existing.properties.model.name if existing.properties.model else None,
                existing.properties.provisioning_state,
                model,
            )
        body = Deployment(
            sku=Sku(name=d.sku_name, capacity=d.capacity),
            properties=DeploymentProperties(
                model=DeploymentModel(
                    format="OpenAI", name=model, version=d.model_version
                )
            ),
        )
        sent = create_at_most_once(
            lambda: self.client.deployments.begin_create_or_update(
                *self._where, d.name, body, polling=self._polling(), retry_total=0
            ),
            lambda: self._deploying(model),
            f"creating deployment {d.name}",
            settings=self.settings.retry,
            sleep=self._sleep,
            clock=self._clock,
        )
        if not isinstance(sent, LROPoller):  # the unanswered PUT had taken effect
            return self._wait_until_provisioned(model)
        logger.info("Deployment %s of %s requested", d.name, model)
        return self._finish(sent, f"Deployment {d.name} of {model}")

    def _finish(self, poller: LROPoller, what: str) -> Any:
        """The poller's result, within ``deployment.poll.timeout_s``."""
        timeout_s = self.settings.deployment.poll.timeout_s
        try:
            result = poller.result(timeout=timeout_s)
        except HttpResponseError as error:
            detail = error.error
            message = f"{detail.code}: {detail.message}" if detail else error.message
            raise DeploymentFailed(f"{what} failed: {message}") from error
        if not poller.done():
            raise AzureTimeout(
                f"Timed out after {timeout_s:g} s waiting for {what} "
                f"({poller.status()}): raise deployment.poll.timeout_s or check the "
                "resource in the Azure portal"
            )
        logger.info("%s: %s", what, poller.status())
        return result

    def _wait_until_provisioned(self, model: str) -> Deployment:
        """Wait for a deployment found in progress (no poller: this run sent no PUT)."""
        d = self.settings.deployment
        steady = PollParams(
            interval_s=d.poll.interval_s,
            max_interval_s=d.poll.interval_s,
            multiplier=1.0,
            timeout_s=d.poll.timeout_s,
        )
        for deadline in poll(
            steady, f"waiting for deployment {d.name}", self._sleep, self._clock
        ):
            resource = self.get()
            state = resource.properties.provisioning_state if resource else "Deleted"
            if state == "Succeeded":
                return resource
            if state in DEPLOYMENT_FAILED_STATES or resource is None:
                raise DeploymentFailed(f"Deployment {d.name} of {model}: {state}")
            deadline.check(f"deployment {d.name} is {state}")
        raise AssertionError("unreachable")  # pragma: no cover

    def delete(self, name: str | None = None) -> bool:
        """Delete the deployment and wait until it is gone; ``False`` if there was none."""
        name = name or self.settings.deployment.name
        try:
            poller = self.client.deployments.begin_delete(
                *self._where, name, polling=self._polling()
            )
        except ResourceNotFoundError:
            return False
        self._finish(poller, f"Deleting deployment {name}")
        return True
