"""The ``deployment`` pipeline: the fine-tuned model served through MLflow, and a hosted
model fine-tuned and deployed through Azure OpenAI (docs/deployment.md)."""

from llm_finetuning.pipelines.deployment.pipeline import create_pipeline

__all__ = ["create_pipeline"]
