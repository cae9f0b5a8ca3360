"""``model_comparison``: every model scored on the same test rows, in one report."""

from llm_finetuning.pipelines.model_comparison.pipeline import create_pipeline

__all__ = ["create_pipeline"]
