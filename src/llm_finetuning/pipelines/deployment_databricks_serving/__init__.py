"""``deployment_databricks_serving``: the fine-tuned model on Databricks Model Serving.

Registered in Unity Catalog under an alias, checked with ``mlflow.models.predict`` in
an isolated environment, served by a serving endpoint (created or updated through the
Databricks SDK), queried with the test sample, scored like every other target, and
deleted at clean-up unless ``endpoint.keep`` (docs/databricks.md, "Model Serving").
"""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """Imported when asked for (``kedro registry list`` stays light)."""
    from llm_finetuning.pipelines.deployment_databricks_serving.pipeline import (
        create_pipeline as create,
    )

    return create(**kwargs)


__all__ = ["create_pipeline"]
