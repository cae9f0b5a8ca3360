"""``data_processing``: raw labelled text -> clean, sampled, tokenized splits."""

from llm_finetuning.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
