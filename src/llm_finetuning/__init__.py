"""llm-finetuning: fine-tune language models for text classification with Kedro."""

__version__ = "0.1.0"
