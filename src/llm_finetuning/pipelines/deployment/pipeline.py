"""Wiring of the ``deployment`` pipeline (catalog: conf/base/catalog_deployment.yml).

Target A (tag ``mlflow_serving``): register -> serve and smoke-test -> served ==
offline -> score -> clean up. Target B (tag ``azure_openai``): export JSONL -> validate
-> job request -> submit the job (its record saved) -> wait for it -> deploy -> predict
-> score -> clean up.
``deployment.targets`` picks which of them do something (see ``nodes``).
"""

from kedro.pipeline import Node, Pipeline

from llm_finetuning.pipelines.deployment.nodes import (
    azure_openai_target_metrics,
    build_fine_tuning_request,
    clean_up_azure_openai,
    clean_up_mlflow_serving,
    compare_served_with_offline,
    deploy_fine_tuned_model,
    export_fine_tuning_files,
    mlflow_target_metrics,
    predict_with_deployment,
    register_mlflow_model,
    score_deployment,
    serve_mlflow_model,
    submit_fine_tuning_job,
    validate_fine_tuning_files,
    wait_for_fine_tuning_job,
)

TARGETS = "params:deployment.targets"
MLFLOW = "params:deployment.mlflow"
AZURE = "params:deployment.azure_openai"
SCORING = "params:evaluation.scoring"
SEED = "params:runtime.seed"
CREDENTIALS = "azure_openai_credentials"

MLFLOW_TAG = "mlflow_serving"
AZURE_TAG = "azure_openai"


def create_mlflow_pipeline() -> Pipeline:
    """Target A: the fine-tuned model registered, served on 127.0.0.1, checked, scored."""
    return Pipeline(
        [
            Node(
                register_mlflow_model,
                inputs=["fine_tuned_model", "test_reviews", TARGETS, MLFLOW],
                outputs="mlflow_registered_model",
                name="register_mlflow_model",
            ),
            Node(
                serve_mlflow_model,
                inputs=[
                    "mlflow_registered_model",
                    "test_reviews",
                    "label_names",
                    MLFLOW,
                    SEED,
                ],
                outputs=["mlflow_served_predictions", "mlflow_serving_report"],
                name="serve_mlflow_model",
            ),
            Node(
                compare_served_with_offline,
                inputs=[
                    "mlflow_served_predictions",
                    "test_predictions",
                    "label_names",
                    MLFLOW,
                ],
                outputs="mlflow_served_vs_offline",
                name="compare_served_with_offline",
            ),
            Node(
                score_deployment,
                inputs=["mlflow_served_predictions", "label_names", SCORING, SEED],
                outputs="mlflow_served_metrics",
                name="score_mlflow_served_predictions",
            ),
            Node(
                clean_up_mlflow_serving,
                inputs=[
                    "mlflow_serving_report",
                    "mlflow_registered_model",
                    "mlflow_served_metrics",
                    MLFLOW,
                ],
                outputs="mlflow_cleanup_report",
                name="clean_up_mlflow_serving",
            ),
            Node(
                mlflow_target_metrics,
                inputs=["mlflow_serving_report", "mlflow_served_metrics"],
                outputs="mlflow_deployment_mlflow_metrics",
                name="log_mlflow_target_metrics",
            ),
        ],
        tags=[MLFLOW_TAG],
    )


def create_azure_openai_pipeline() -> Pipeline:
    """Target B: hosted fine-tuning, deployment, scoring and clean-up in Azure OpenAI."""
    return Pipeline(
        [
            Node(
                export_fine_tuning_files,
                inputs={
                    "train_reviews": "train_reviews",
                    "validation_reviews": "validation_reviews",
                    "label_names": "label_names",
                    "targets": TARGETS,
                    "azure_params": AZURE,
                    "seed": SEED,
                },
                outputs=["azure_openai_train_jsonl", "azure_openai_validation_jsonl"],
                name="export_fine_tuning_files",
            ),
            Node(
                validate_fine_tuning_files,
                inputs=[
                    "azure_openai_train_jsonl",
                    "azure_openai_validation_jsonl",
                    "label_names",
                    TARGETS,
                    AZURE,
                ],
                outputs="azure_openai_validation_report",
                name="validate_fine_tuning_files",
            ),
            Node(
                build_fine_tuning_request,
                inputs=["azure_openai_validation_report", AZURE],
                outputs="azure_openai_job_request",
                name="build_fine_tuning_request",
            ),
            Node(
                submit_fine_tuning_job,
                inputs={
                    "train_jsonl": "azure_openai_train_jsonl",
                    "validation_jsonl": "azure_openai_validation_jsonl",
                    "job_request": "azure_openai_job_request",
                    # The record of the run before (same file as the output; {} if none).
                    "previous_record": "azure_openai_previous_job_record",
                    "credentials": CREDENTIALS,
                    "azure_params": AZURE,
                },
                # Saved when this node returns, before polling: what a rerun resumes.
                outputs="azure_openai_job_record",
                name="submit_fine_tuning_job",
            ),
            Node(
                wait_for_fine_tuning_job,
                inputs=["azure_openai_job_record", CREDENTIALS, AZURE],
                outputs=[
                    "azure_openai_fine_tuning_job",
                    "azure_openai_fine_tuning_results",
                ],
                name="wait_for_fine_tuning_job",
            ),
            Node(
                deploy_fine_tuned_model,
                inputs=["azure_openai_fine_tuning_job", CREDENTIALS, AZURE],
                outputs="azure_openai_deployment",
                name="deploy_fine_tuned_model",
            ),
            Node(
                predict_with_deployment,
                inputs={
                    "deployment": "azure_openai_deployment",
                    "test_reviews": "test_reviews",
                    "label_names": "label_names",
                    "credentials": CREDENTIALS,
                    "azure_params": AZURE,
                    "seed": SEED,
                },
                outputs="azure_openai_test_predictions",
                name="predict_with_deployment",
            ),
            Node(
                score_deployment,
                inputs=["azure_openai_test_predictions", "label_names", SCORING, SEED],
                outputs="azure_openai_metrics",
                name="score_azure_openai_predictions",
            ),
            Node(
                clean_up_azure_openai,
                inputs=[
                    "azure_openai_deployment",
                    "azure_openai_fine_tuning_job",
                    "azure_openai_metrics",
                    CREDENTIALS,
                    AZURE,
                ],
                outputs="azure_openai_cleanup_report",
                name="clean_up_azure_openai",
            ),
            Node(
                azure_openai_target_metrics,
                inputs=["azure_openai_validation_report", "azure_openai_metrics"],
                outputs="azure_openai_deployment_mlflow_metrics",
                name="log_azure_openai_target_metrics",
            ),
        ],
        tags=[AZURE_TAG],
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Both targets; ``deployment.targets`` picks which of them act."""
    return create_mlflow_pipeline() + create_azure_openai_pipeline()
