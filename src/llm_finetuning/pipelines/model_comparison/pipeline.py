"""Wiring of ``model_comparison`` (catalog: conf/base/catalog_model_comparison.yml).

One node. The pipeline registry appends it to every pipeline that produces a compared
model (evaluation and the deployment targets), so whichever of them runs rebuilds the
report with every model on disk; ``kedro run --pipelines model_comparison`` rebuilds it
from the files alone. The predictions frames are ``OptionalDataset`` s (``None`` until a
model has run) named as they are, so Kedro orders the node after whichever of them
the run produces. Latency and cost come from ``<dataset>_or_none`` views of files the
same nodes, or nodes before them, write.
"""

from kedro.pipeline import Node, Pipeline

from llm_finetuning.pipelines.model_comparison.nodes import model_comparison

# node argument -> predictions frame (an OptionalDataset: None until written)
PREDICTIONS = {
    "fine_tuned": "test_predictions",
    "majority_class": "majority_class_predictions",
    "tfidf_logreg": "tfidf_logreg_predictions",
    "mlflow_serving": "mlflow_served_predictions",
    "databricks_serving": "databricks_serving_predictions",
    "azure_openai_base": "azure_openai_base_predictions",
    "azure_openai": "azure_openai_test_predictions",
}
# node argument -> a view (None when absent) of a file written with or before them
SIDE_INFORMATION = {
    "training_metrics": "training_metrics_or_none",
    "mlflow_serving_report": "mlflow_serving_report_or_none",
    "databricks_serving_report": "databricks_serving_report_or_none",
    "azure_openai_fine_tuning_job": "azure_openai_fine_tuning_job_or_none",
}
OPTIONAL_INPUTS = frozenset({*PREDICTIONS.values(), *SIDE_INFORMATION.values()})


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                model_comparison,
                inputs={
                    **PREDICTIONS,
                    **SIDE_INFORMATION,
                    "label_names": "label_names",
                    "scoring": "params:evaluation.scoring",
                    "report": "params:evaluation.report",
                    "azure_params": "params:deployment.azure_openai",
                    "seed": "params:runtime.seed",
                },
                outputs=[
                    "model_comparison",
                    "model_comparison_table",
                    "model_comparison_mlflow_metrics",
                ],
                name="compare_models",
            )
        ],
        tags=["model_comparison"],
    )
