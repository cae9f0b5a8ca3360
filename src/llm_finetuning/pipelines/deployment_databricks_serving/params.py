"""The ``deployment_databricks_serving`` parameter block.

Nothing secret lives here: the workspace and its credentials come from the Databricks
SDK's unified authentication (``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` or a service
principal's ``DATABRICKS_CLIENT_ID``/``_SECRET``, a ``~/.databrickscfg`` profile, or
the notebook's context on a cluster); ``profile`` only names a profile.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from llm_finetuning.params import Params

# Model Serving endpoint names: letters, digits, dashes and underscores, at most 63.
ENDPOINT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
DEFAULT_MAX_REQUEST_BYTES = 262_144


class PredictCheckParams(Params):
    """``mlflow.models.predict`` on the registered model before it is served.

    Attributes:
        enabled: Run the check (off where no isolated environment can be built).
        env_manager: ``uv`` or ``virtualenv`` install the model's own requirements in
            a fresh environment, as Model Serving will; ``local`` uses this one.
        n_examples: Test reviews sent through the check.
    """

    enabled: bool = True
    env_manager: Literal["uv", "virtualenv", "local"] = "uv"
    n_examples: PositiveInt = 4


class EndpointParams(Params):
    """The serving endpoint.

    Attributes:
        name: Endpoint name; created if absent, its config updated if present.
        workload_size: ``Small`` (4 concurrent requests), ``Medium`` (16), ``Large``
            (64).
        workload_type: ``CPU`` or a GPU type (``GPU_SMALL``, ...); ``None``: CPU.
        scale_to_zero_enabled: Scale to zero replicas when idle (no cost when idle;
            the first request after idling waits for a cold start).
        keep: Clean-up leaves the endpoint serving (it is billed while it runs).
        profile: A ``~/.databrickscfg`` profile; ``None``: unified authentication's
            default order (environment, default profile, notebook context).
        ready_timeout_s: How long creating or updating may take (builds the model's
            container: often 10-30 minutes).
        poll_interval_s: Seconds between state polls.
        request_batch_size: Reviews per query.
        request_timeout_s: HTTP timeout of one SDK call.
    """

    name: str = Field("llm-finetuning-text-classifier", pattern=ENDPOINT_NAME)
    workload_size: Literal["Small", "Medium", "Large"] = "Small"
    workload_type: str | None = None
    scale_to_zero_enabled: bool = True
    keep: bool = False
    profile: str | None = None
    ready_timeout_s: PositiveFloat = 3600.0
    poll_interval_s: PositiveFloat = 15.0
    request_batch_size: PositiveInt = 16
    request_timeout_s: PositiveFloat = 120.0


class DatabricksServingParams(Params):
    """The ``deployment_databricks_serving`` block (docs/databricks.md, "Model Serving").

    Attributes:
        registered_model_name: Unity Catalog name ``<catalog>.<schema>.<model>``.
        alias: Alias set on the new version; the endpoint serves that version.
        registry_uri: ``None``: the run's registry (``databricks-uc`` on Databricks,
            ``conf/databricks/mlflow.yml``).
        artifact_name: Name of the logged model in the run.
        sample_size: Test reviews sent to the endpoint (``None``: all).
        batch_size: Reviews per forward pass inside the served model.
        max_request_bytes: Most UTF-8 bytes of review text per request (HTTP 413).
        pip_requirements: Requirements of the served model; ``None`` pins the
            installed versions of what the model imports.
        predict_check: The check before serving.
        endpoint: The serving endpoint.
    """

    key: ClassVar[str] = "deployment_databricks_serving"

    registered_model_name: str = "main.llm_finetuning.llm_finetuning_text_classifier"
    alias: str = Field("champion", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    registry_uri: str | None = None
    artifact_name: str = "text_classifier"
    sample_size: PositiveInt | None = 200
    batch_size: PositiveInt = 16
    max_request_bytes: PositiveInt | None = DEFAULT_MAX_REQUEST_BYTES
    pip_requirements: list[str] | None = None
    predict_check: PredictCheckParams = PredictCheckParams()
    endpoint: EndpointParams = EndpointParams()

    @field_validator("registered_model_name")
    @classmethod
    def _three_level(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) != 3 or not all(parts):
            raise ValueError(
                f"must be a Unity Catalog name <catalog>.<schema>.<model>, not {value!r}"
            )
        return value
