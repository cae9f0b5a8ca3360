"""``deployment_azure_openai``: the deployment pipeline's Azure OpenAI target alone (a
package of its own so that Kedro finds it by name; the nodes live in
``pipelines/deployment``)."""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    from llm_finetuning.pipelines.deployment.pipeline import (
        create_azure_openai_pipeline,
    )

    return create_azure_openai_pipeline()
