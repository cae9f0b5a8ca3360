"""The ``deployment`` pipelines: the fine-tuned model served through MLflow
(``deployment_mlflow``), and a hosted model fine-tuned and deployed through Azure OpenAI
(``deployment_azure_openai``; ``deployment_azure_openai_dry_run`` prepares its files and
request only). ``deployment`` is both targets (docs/deployment.md)."""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """Both targets, imported when asked for (``kedro registry list`` stays light)."""
    from llm_finetuning.pipelines.deployment.pipeline import create_pipeline as create

    return create(**kwargs)


__all__ = ["create_pipeline"]
