"""Project pipelines."""

from __future__ import annotations

import warnings

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

# Every ``deployment*`` pipeline is drawn in this one group.
DEPLOYMENT = "deployment"
# The comparison report node is drawn with the evaluation's reports.
COMPARISON = "model_comparison"


def group_of(pipeline_name: str) -> str:
    """The namespace (kedro-viz group) of a registered pipeline's nodes: the pipeline's
    own name, ``deployment`` for every deployment target, ``evaluation`` for the model
    comparison."""
    if pipeline_name == COMPARISON:
        return "evaluation"
    return DEPLOYMENT if pipeline_name.startswith(DEPLOYMENT) else pipeline_name


def _comparison_pipeline() -> Pipeline:
    from llm_finetuning.pipelines.model_comparison import create_pipeline

    return create_pipeline()


def grouped(pipeline_name: str, pipeline: Pipeline) -> Pipeline:
    """``pipeline`` with its nodes in the namespace ``group_of(pipeline_name)``.

    Only the nodes move: ``prefix_datasets_with_namespace=False`` keeps every dataset
    and parameter name, so the catalog and ``conf/`` are unchanged. Node names gain the
    prefix (``training.fit_classifier``), which ``--nodes`` needs; ``--namespaces
    training`` selects a whole group. A namespace already there nests under the group
    (``deployment.mlflow_serving``).
    """
    with warnings.catch_warnings():
        # A target's scoring datasets are named after its own namespace
        # (``mlflow_serving.evaluation_metrics``), which Kedro's naming check expects
        # to start with the top-level one, now ``deployment``: names kept on purpose.
        warnings.filterwarnings(
            "ignore",
            message="One or more dataset names contain '.' characters",
            category=UserWarning,
        )
        return Pipeline(
            pipeline,
            namespace=group_of(pipeline_name),
            prefix_datasets_with_namespace=False,
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

    Each pipeline's nodes are namespaced by :func:`grouped`, so kedro-viz draws the
    default as a few collapsed groups (data_processing, training, evaluation, scoring,
    deployment) instead of every node; see docs/visualisation.md.
    """
    pipelines = {
        name: grouped(name, p)
        for name, p in find_pipelines(raise_errors=True).items()
        if name != "__default__"
    }
    # Kedro finds only the pipelines a run names: append to those found. The
    # comparison is grouped once, under evaluation, so every pipeline holds the same
    # node and a sum of them holds it once.
    comparison = pipelines.get(COMPARISON) or grouped(
        COMPARISON, _comparison_pipeline()
    )
    for name in set(COMPARED) & set(pipelines):
        pipelines[name] = pipelines[name] + comparison
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if name not in NEEDS_A_SERVICE),
        Pipeline([]),
    )
    return pipelines
