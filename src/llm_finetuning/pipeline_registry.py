"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Pipelines that call Azure: left out of the default, which runs offline.
NEEDS_AZURE = ("deployment", "deployment_azure_openai")


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline under ``pipelines/``, and ``__default__``.

    The deployment targets are pipelines: ``deployment_mlflow``,
    ``deployment_azure_openai`` (and its offline part,
    ``deployment_azure_openai_dry_run``), ``deployment`` both. The default is every
    pipeline that works without Azure credentials: the MLflow target and the Azure dry
    run stand in for ``deployment``.
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (
            p
            for name, p in pipelines.items()
            if name not in (*NEEDS_AZURE, "__default__")
        ),
        Pipeline([]),
    )
    return pipelines
