"""``evaluation``: score the fine-tuned model on the test set, plot, explain, compare."""

from llm_finetuning.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
