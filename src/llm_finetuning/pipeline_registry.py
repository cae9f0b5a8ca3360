"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Pipelines that need a cloud service and its credentials (Azure OpenAI, a Databricks
# workspace): left out of the default, which runs offline.
NEEDS_A_SERVICE = (
    "deployment",
    "deployment_azure_openai",
    "deployment_databricks_serving",
)
# Pipelines that produce a model of the comparison report: each ends with the
# ``model_comparison`` node, so whichever of them runs rebuilds the report (with the
# other models read from disk, when they have run).
COMPARED = (
    "evaluation",
    "deployment",
    "deployment_mlflow",
    "deployment_azure_openai",
    "deployment_databricks_serving",
)


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline under ``pipelines/``, and ``__default__``.

    The deployment targets are pipelines: ``deployment_mlflow``,
    ``deployment_azure_openai`` (and its offline part,
    ``deployment_azure_openai_dry_run``), ``deployment_databricks_serving``,
    ``deployment`` the MLflow and Azure targets. The default is every pipeline that
    works without a cloud service: the MLflow target and the Azure dry run stand in for
    ``deployment``. Each pipeline of :data:`COMPARED` ends with ``model_comparison``
    (one node, the same in each, so sums of them hold it once).
    """
    from llm_finetuning.pipelines.model_comparison import create_pipeline

    # Kedro finds only the pipelines a run names: append to those found.
    pipelines = find_pipelines(raise_errors=True)
    comparison = create_pipeline()
    for name in set(COMPARED) & set(pipelines):
        pipelines[name] = pipelines[name] + comparison
    pipelines["__default__"] = sum(
        (
            p
            for name, p in pipelines.items()
            if name not in (*NEEDS_A_SERVICE, "__default__")
        ),
        Pipeline([]),
    )
    return pipelines
