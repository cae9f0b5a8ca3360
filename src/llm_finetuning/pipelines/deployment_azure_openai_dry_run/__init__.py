"""``deployment_azure_openai_dry_run``: the Azure OpenAI target's offline part (JSONL
files, their validation and cost estimate, the job request; nothing sent to Azure)."""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    from llm_finetuning.pipelines.deployment.pipeline import (
        create_azure_openai_dry_run_pipeline,
    )

    return create_azure_openai_dry_run_pipeline()
