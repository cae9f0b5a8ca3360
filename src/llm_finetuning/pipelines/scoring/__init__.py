"""``scoring``: label new, unlabelled text with the fine-tuned or a registered model."""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """The pipeline, imported when asked for (``kedro registry list`` stays light)."""
    from llm_finetuning.pipelines.scoring.pipeline import create_pipeline as create

    return create(**kwargs)


__all__ = ["create_pipeline"]
