"""Fine-tune a sequence-classification model with the Hugging Face Trainer."""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """The pipeline, imported when asked for: the project's hooks import modules of
    this package, and ``settings.py`` (read by every ``kedro`` command) must not
    pay for torch and pandas.
    """
    from llm_finetuning.pipelines.training.pipeline import create_pipeline as create

    return create(**kwargs)


__all__ = ["create_pipeline"]
