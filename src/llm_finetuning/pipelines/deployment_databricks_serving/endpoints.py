"""Model Serving endpoints through the Databricks SDK (``WorkspaceClient.serving_endpoints``).

Credentials are the SDK's unified authentication; nothing here reads or logs a token.
The SDK retries throttling (429) and unavailability (503) itself, honouring
``Retry-After``. What it does not retry is made safe here: a create answered 5xx after
it took effect is found by the next ``get``, so an endpoint is never created twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from llm_finetuning.pipelines.deployment_databricks_serving.params import (
    EndpointParams,
)

logger = logging.getLogger(__name__)

READY = "READY"
NOT_UPDATING = "NOT_UPDATING"
FAILED_UPDATES = ("UPDATE_FAILED", "UPDATE_CANCELED")


class EndpointNotReady(RuntimeError):
    """The endpoint's config update failed, was cancelled or timed out."""


def workspace_client(settings: EndpointParams) -> Any:
    """A ``WorkspaceClient`` from unified authentication (``profile`` if set)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    return WorkspaceClient(
        config=Config(
            profile=settings.profile,
            http_timeout_seconds=int(settings.request_timeout_s),
        )
    )


def served_entity(model_name: str, version: str, settings: EndpointParams) -> Any:
    """The served entity: one Unity Catalog model version, sized by ``settings``."""
    from databricks.sdk.service.serving import (
        ServedEntityInput,
        ServingModelWorkloadType,
    )

    return ServedEntityInput(
        entity_name=model_name,
        entity_version=str(version),
        workload_size=settings.workload_size,
        workload_type=ServingModelWorkloadType(settings.workload_type)
        if settings.workload_type
        else None,
        scale_to_zero_enabled=settings.scale_to_zero_enabled,
    )


def find_endpoint(client: Any, name: str) -> Any | None:
    """The endpoint named ``name``, or ``None``."""
    from databricks.sdk.errors import NotFound

    try:
        return client.serving_endpoints.get(name)
    except NotFound:
        return None


def create_or_update(
    client: Any, model_name: str, version: str, settings: EndpointParams
) -> bool:
    """Point endpoint ``settings.name`` at ``model_name`` ``version``; ``True`` if created.

    An existing endpoint gets a config update (it keeps serving its old config until the
    new one is ready). A create that fails with a server error is checked with ``get``
    before anything is sent again: it may have taken effect.
    """
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.service.serving import EndpointCoreConfigInput

    entity = served_entity(model_name, version, settings)
    if find_endpoint(client, settings.name) is not None:
        logger.info(
            "Updating endpoint %s to %s version %s", settings.name, model_name, version
        )
        client.serving_endpoints.update_config(settings.name, served_entities=[entity])
        return False
    logger.info(
        "Creating endpoint %s for %s version %s (%s, scale to zero: %s)",
        settings.name,
        model_name,
        version,
        settings.workload_size,
        settings.scale_to_zero_enabled,
    )
    try:
        client.serving_endpoints.create(
            settings.name,
            config=EndpointCoreConfigInput(
                name=settings.name, served_entities=[entity]
            ),
        )
    except DatabricksError as error:
        if find_endpoint(client, settings.name) is None:
            raise
        logger.warning(
            "Creating %s answered %s, but the endpoint exists: going on with it",
            settings.name,
            type(error).__name__,
        )
    return True


def _state(endpoint: Any) -> tuple[str, str]:
    state = endpoint.state
    ready = getattr(state.ready, "value", state.ready) if state else None
    update = (
        getattr(state.config_update, "value", state.config_update) if state else None
    )
    return str(ready), str(update)


def wait_until_ready(client: Any, settings: EndpointParams) -> dict[str, Any]:
    """Poll until the endpoint is ``READY`` and ``NOT_UPDATING``.

    Raises:
        EndpointNotReady: the update failed or was cancelled, or ``ready_timeout_s``
            passed.
    """
    started = time.monotonic()
    states: list[str] = []
    while True:
        endpoint = client.serving_endpoints.get(settings.name)
        ready, update = _state(endpoint)
        if not states or states[-1] != f"{ready}/{update}":
            states.append(f"{ready}/{update}")
            logger.info("Endpoint %s: %s, %s", settings.name, ready, update)
        if update in FAILED_UPDATES:
            raise EndpointNotReady(
                f"The config update of endpoint {settings.name} ended {update} "
                f"(states {states}): see the endpoint's build and server logs in the "
                "workspace (Serving -> the endpoint -> Logs)"
            )
        if ready == READY and update == NOT_UPDATING:
            return {"states": states, "ready_s": round(time.monotonic() - started, 3)}
        if time.monotonic() - started > settings.ready_timeout_s:
            raise EndpointNotReady(
                f"Endpoint {settings.name} not ready after {settings.ready_timeout_s:g} s "
                f"(states {states})"
            )
        time.sleep(settings.poll_interval_s)


def served_version(client: Any, name: str) -> list[dict[str, Any]]:
    """``[{"entity_name", "entity_version"}, ...]`` of the endpoint's current config."""
    endpoint = client.serving_endpoints.get(name)
    entities = (endpoint.config.served_entities or []) if endpoint.config else []
    return [
        {"entity_name": e.entity_name, "entity_version": e.entity_version}
        for e in entities
    ]


def query(
    client: Any, name: str, texts: Sequence[str], *, as_inputs: bool = False
) -> pd.DataFrame:
    """The endpoint's predictions for ``texts``: ``dataframe_split`` (or ``inputs``)."""
    from databricks.sdk.service.serving import DataframeSplitInput

    if as_inputs:
        response = client.serving_endpoints.query(name, inputs=list(texts))
    else:
        response = client.serving_endpoints.query(
            name,
            dataframe_split=DataframeSplitInput(
                columns=["text"], data=[[text] for text in texts]
            ),
        )
    predictions = response.predictions
    if isinstance(predictions, dict):  # a frame serialised column-wise
        predictions = pd.DataFrame(predictions).to_dict("records")
    if not isinstance(predictions, list) or len(predictions) != len(texts):
        raise ValueError(
            f"Endpoint {name} answered {type(predictions).__name__} of "
            f"{len(predictions) if hasattr(predictions, '__len__') else '?'} "
            f"predictions for {len(texts)} texts"
        )
    return pd.DataFrame(predictions)


def delete(client: Any, name: str) -> bool:
    """Delete the endpoint; ``False`` if there was none."""
    from databricks.sdk.errors import NotFound

    try:
        client.serving_endpoints.delete(name)
    except NotFound:
        return False
    logger.info("Deleted serving endpoint %s", name)
    return True
