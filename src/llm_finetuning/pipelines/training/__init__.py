"""Fine-tune a sequence-classification model with the Hugging Face Trainer."""

from llm_finetuning.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
