"""``data_processing``: raw labelled text -> clean, sampled, tokenized splits."""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """The pipeline, imported when asked for: the project's hooks import modules of
    this package, and ``settings.py`` (read by every ``kedro`` command) must not
    pay for torch and pandas.
    """
    from llm_finetuning.pipelines.data_processing.pipeline import (
        create_pipeline as create,
    )

    return create(**kwargs)


__all__ = ["create_pipeline"]
