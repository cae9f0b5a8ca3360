"""``deployment_mlflow``: the deployment pipeline's MLflow target alone (a package of
its own so that Kedro finds it by name; the nodes live in ``pipelines/deployment``)."""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    from llm_finetuning.pipelines.deployment.pipeline import create_mlflow_pipeline

    return create_mlflow_pipeline()
