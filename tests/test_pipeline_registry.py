"""The registry groups each pipeline's nodes in a namespace and renames nothing else."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from kedro.pipeline import Node, Pipeline

from llm_finetuning.pipeline_registry import COMPARED, group_of, grouped

# What kedro-viz draws, collapsed, when it opens on __default__.
DEFAULT_GROUPS = {"data_processing", "training", "evaluation", "scoring", "deployment"}


def _first(*args):
    return args[0]


@pytest.fixture(scope="module")
def registered(project_root: Path) -> dict[str, Pipeline]:
    from kedro.framework.project import find_pipelines
    from kedro.framework.startup import bootstrap_project

    from llm_finetuning.pipeline_registry import register_pipelines

    bootstrap_project(project_root)
    return {"found": find_pipelines(raise_errors=True), **register_pipelines()}


def test_group_of_names_the_pipeline_and_one_group_for_deployment() -> None:
    assert group_of("training") == "training"
    assert group_of("deployment") == "deployment"
    assert group_of("deployment_azure_openai_dry_run") == "deployment"
    assert group_of("model_comparison") == "evaluation"


def test_grouping_keeps_dataset_and_parameter_names_and_nests_namespaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Kedro warns about dotted dataset names once per process: re-arm it.
    monkeypatch.setattr(Node, "__dotted_dataset_name_warned__", False, raising=False)
    inner = Pipeline(
        [
            Node(_first, "test_predictions", "metrics", name="score"),
            Node(_first, "metrics", "plot", name="plot"),
        ],
        namespace="mlflow_serving",  # as deployment reuses the evaluation scoring
        inputs={"test_predictions": "served"},
        outputs={"metrics": "served_metrics"},
    )  # writes mlflow_serving.plot: named after the inner namespace
    serve = Node(
        _first, ["reviews", "params:deployment.mlflow"], "served", name="serve"
    )
    pipeline = Pipeline([serve]) + inner
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the dotted-name style warning is silenced
        result = grouped("deployment_mlflow", pipeline)
    assert {n.name for n in result.nodes} == {
        "deployment.serve",
        "deployment.mlflow_serving.score",
        "deployment.mlflow_serving.plot",
    }
    assert result.datasets() == pipeline.datasets()
    assert {n.namespace for n in result.nodes} == {
        "deployment",
        "deployment.mlflow_serving",
    }


def test_every_registered_pipeline_keeps_its_catalog_contract(
    registered: dict[str, Pipeline],
) -> None:
    found = registered.pop("found")
    comparison = found["model_comparison"]
    for name, own in found.items():
        if name == "__default__":
            continue
        # The registry appends the model comparison to these.
        pipeline = own + comparison if name in COMPARED else own
        mine = registered[name]
        assert mine.inputs() == pipeline.inputs(), name
        assert mine.outputs() == pipeline.outputs(), name
        assert {n.namespace.split(".")[0] for n in mine.nodes} == {group_of(name)} | (
            {"evaluation"} if name in COMPARED else set()
        )
        assert {n.name for n in mine.nodes} == {
            f"{group_of(name if n not in comparison.nodes else 'model_comparison')}"
            f".{n.name}"
            for n in pipeline.nodes
        }


def test_default_is_drawn_as_the_groups(registered: dict[str, Pipeline]) -> None:
    nodes = registered["__default__"].nodes
    assert all(n.namespace for n in nodes), "a node outside every group"
    assert {n.namespace.split(".")[0] for n in nodes} == DEFAULT_GROUPS
