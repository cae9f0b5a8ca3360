"""Wiring of the ``deployment`` pipelines (catalog: conf/base/catalog_deployment.yml).

``deployment_mlflow`` (tag ``mlflow_serving``): register -> serve and smoke-test ->
served == offline -> score -> clean up. ``deployment_azure_openai`` (tag
``azure_openai``): export JSONL -> validate -> job request (these three alone:
``deployment_azure_openai_dry_run``) -> submit the job (its record saved) -> wait for it
-> deploy -> predict -> score -> clean up -> the base model's zero-shot answers (the
model comparison's "before fine-tuning" row). Each target scores its predictions with
the evaluation pipeline's scoring pipeline under the target's namespace, and reads only
its own inputs, so it runs alone; ``deployment`` is both. The pipeline registry appends
the model comparison to each target.
"""

from kedro.pipeline import Node, Pipeline

from llm_finetuning.pipelines.deployment.nodes import (
    azure_openai_estimate_metrics,
    azure_openai_target_metrics,
    azure_openai_test_sample,
    build_fine_tuning_request,
    clean_up_azure_openai,
    clean_up_mlflow_serving,
    compare_served_with_offline,
    deploy_fine_tuned_model,
    export_fine_tuning_files,
    mlflow_target_metrics,
    mlflow_test_sample,
    predict_with_base_model,
    predict_with_deployment,
    register_mlflow_model,
    serve_mlflow_model,
    submit_fine_tuning_job,
    validate_fine_tuning_files,
    wait_for_fine_tuning_job,
)
from llm_finetuning.pipelines.evaluation.pipeline import create_scoring_pipeline

MLFLOW = "params:deployment.mlflow"
AZURE = "params:deployment.azure_openai"
SEED = "params:runtime.seed"
CREDENTIALS = "azure_openai_credentials"

MLFLOW_TAG = "mlflow_serving"
AZURE_TAG = "azure_openai"


def scoring_pipeline(
    target: str, predictions: str, reviews: str, metrics: str
) -> Pipeline:
    """The evaluation's scoring pipeline on a target's ``predictions`` of the sampled
    test ``reviews``, namespaced.

    Writes ``metrics`` and ``<target>.confusion_matrix_plot``, ``<target>.roc_curve_plot``,
    ...; the figures name the model after ``deployment.reports.<target>``.
    """
    return Pipeline(
        create_scoring_pipeline(),
        namespace=target,
        inputs={
            "test_predictions": predictions,
            "test_reviews": reviews,
            "label_names": "label_names",
        },
        outputs={"evaluation_metrics": metrics},
        parameters={
            "params:evaluation.scoring": "params:evaluation.scoring",
            "params:runtime.seed": SEED,
            "params:evaluation.report": f"params:deployment.reports.{target}",
        },
        tags=[target],
    )


def create_mlflow_pipeline() -> Pipeline:
    """Target A: the fine-tuned model registered, served on 127.0.0.1, checked, scored."""
    serve = Pipeline(
        [
            Node(
                register_mlflow_model,
                inputs=["fine_tuned_model", "test_reviews", MLFLOW, "params:model"],
                outputs="mlflow_registered_model",
                name="register_mlflow_model",
            ),
            Node(
                mlflow_test_sample,
                inputs=["test_reviews", MLFLOW, SEED],
                outputs="mlflow_test_reviews",
                name="sample_mlflow_test_reviews",
            ),
            Node(
                serve_mlflow_model,
                inputs=[
                    "mlflow_registered_model",
                    "mlflow_test_reviews",
                    "label_names",
                    MLFLOW,
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
        ],
        tags=[MLFLOW_TAG],
    )
    finish = Pipeline(
        [
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
    return (
        serve
        + scoring_pipeline(
            MLFLOW_TAG,
            "mlflow_served_predictions",
            "mlflow_test_reviews",
            "mlflow_served_metrics",
        )
        + finish
    )


def create_azure_openai_dry_run_pipeline() -> Pipeline:
    """Target B's offline part: the JSONL files, their validation and cost estimate, and
    the job request; nothing is sent to Azure."""
    return Pipeline(
        [
            Node(
                export_fine_tuning_files,
                inputs=[
                    "train_reviews",
                    "validation_reviews",
                    "label_names",
                    AZURE,
                    SEED,
                ],
                outputs=["azure_openai_train_jsonl", "azure_openai_validation_jsonl"],
                name="export_fine_tuning_files",
            ),
            Node(
                validate_fine_tuning_files,
                inputs=[
                    "azure_openai_train_jsonl",
                    "azure_openai_validation_jsonl",
                    "label_names",
                    AZURE,
                ],
                outputs="azure_openai_validation_report",
                name="validate_fine_tuning_files",
            ),
            Node(
                azure_openai_estimate_metrics,
                inputs="azure_openai_validation_report",
                outputs="azure_openai_estimate_mlflow_metrics",
                name="log_azure_openai_estimate",
            ),
            Node(
                build_fine_tuning_request,
                inputs=["azure_openai_validation_report", AZURE],
                outputs="azure_openai_job_request",
                name="build_fine_tuning_request",
            ),
        ],
        tags=[AZURE_TAG],
    )


def create_azure_openai_pipeline() -> Pipeline:
    """Target B: hosted fine-tuning, deployment, scoring and clean-up in Azure OpenAI."""
    fine_tune = Pipeline(
        [
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
                azure_openai_test_sample,
                inputs=["test_reviews", AZURE, SEED],
                outputs="azure_openai_test_reviews",
                name="sample_azure_openai_test_reviews",
            ),
            Node(
                predict_with_deployment,
                inputs=[
                    "azure_openai_deployment",
                    "azure_openai_test_reviews",
                    "label_names",
                    CREDENTIALS,
                    AZURE,
                ],
                outputs="azure_openai_test_predictions",
                name="predict_with_deployment",
            ),
        ],
        tags=[AZURE_TAG],
    )
    finish = Pipeline(
        [
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
                inputs="azure_openai_metrics",
                outputs="azure_openai_deployment_mlflow_metrics",
                name="log_azure_openai_target_metrics",
            ),
            Node(
                predict_with_base_model,
                inputs=[
                    "azure_openai_test_reviews",
                    "label_names",
                    CREDENTIALS,
                    AZURE,
                    # after clean-up: the fine-tuned deployment is billed per hour
                    "azure_openai_cleanup_report",
                ],
                outputs="azure_openai_base_predictions",
                name="predict_with_base_model",
            ),
        ],
        tags=[AZURE_TAG],
    )
    return (
        create_azure_openai_dry_run_pipeline()
        + fine_tune
        + scoring_pipeline(
            AZURE_TAG,
            "azure_openai_test_predictions",
            "azure_openai_test_reviews",
            "azure_openai_metrics",
        )
        + finish
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Both targets (``deployment``)."""
    return create_mlflow_pipeline() + create_azure_openai_pipeline()
