"""Wiring of ``deployment_databricks_serving`` (tag ``databricks_serving``; catalog:
conf/base/catalog_deployment_databricks_serving.yml).

register in Unity Catalog + alias -> sample -> ``mlflow.models.predict`` check ->
endpoint created or updated, ready -> queried -> scored by the evaluation's scoring
pipeline (namespace ``databricks_serving``) -> endpoint deleted, metrics logged. It
reads only ``fine_tuned_model``, ``test_reviews`` and ``label_names``, so it runs alone.
"""

from kedro.pipeline import Node, Pipeline

from llm_finetuning.pipelines.deployment_databricks_serving.nodes import (
    check_with_mlflow_predict,
    clean_up_databricks_serving,
    databricks_serving_metrics,
    deploy_serving_endpoint,
    query_serving_endpoint,
    register_uc_model,
    sample_test_reviews,
)
from llm_finetuning.pipelines.evaluation.pipeline import create_scoring_pipeline

PARAMS = "params:deployment_databricks_serving"
TAG = "databricks_serving"


def create_pipeline(**kwargs) -> Pipeline:
    serve = Pipeline(
        [
            Node(
                register_uc_model,
                inputs=["fine_tuned_model", "test_reviews", PARAMS, "params:model"],
                outputs="databricks_serving_registered_model",
                name="register_uc_model",
            ),
            Node(
                sample_test_reviews,
                inputs=["test_reviews", PARAMS, "params:runtime.seed"],
                outputs="databricks_serving_test_reviews",
                name="sample_databricks_serving_test_reviews",
            ),
            Node(
                check_with_mlflow_predict,
                inputs=[
                    "databricks_serving_registered_model",
                    "databricks_serving_test_reviews",
                    PARAMS,
                ],
                outputs="databricks_serving_predict_check",
                name="check_with_mlflow_predict",
            ),
            Node(
                deploy_serving_endpoint,
                inputs=[
                    "databricks_serving_registered_model",
                    "databricks_serving_predict_check",
                    PARAMS,
                ],
                outputs="databricks_serving_endpoint",
                name="deploy_serving_endpoint",
            ),
            Node(
                query_serving_endpoint,
                inputs=[
                    "databricks_serving_endpoint",
                    "databricks_serving_test_reviews",
                    "label_names",
                    PARAMS,
                ],
                outputs=["databricks_serving_predictions", "databricks_serving_report"],
                name="query_serving_endpoint",
            ),
        ],
        tags=[TAG],
    )
    score = Pipeline(
        create_scoring_pipeline(),
        namespace=TAG,
        inputs={
            "test_predictions": "databricks_serving_predictions",
            "test_reviews": "databricks_serving_test_reviews",
            "label_names": "label_names",
        },
        outputs={"evaluation_metrics": "databricks_serving_metrics"},
        parameters={
            "params:evaluation.scoring": "params:evaluation.scoring",
            "params:runtime.seed": "params:runtime.seed",
            "params:evaluation.report": f"{PARAMS}_report",
        },
        tags=[TAG],
    )
    finish = Pipeline(
        [
            Node(
                clean_up_databricks_serving,
                inputs=[
                    "databricks_serving_endpoint",
                    "databricks_serving_metrics",
                    PARAMS,
                ],
                outputs="databricks_serving_cleanup_report",
                name="clean_up_databricks_serving",
            ),
            Node(
                databricks_serving_metrics,
                inputs=["databricks_serving_report", "databricks_serving_metrics"],
                outputs="databricks_serving_mlflow_metrics",
                name="log_databricks_serving_metrics",
            ),
        ],
        tags=[TAG],
    )
    return serve + score + finish
