"""Wiring of the ``scoring`` pipeline (catalog: conf/base/catalog_scoring.yml)."""

from kedro.pipeline import Node, Pipeline

from llm_finetuning.pipelines.scoring.nodes import score_texts


def create_pipeline(**kwargs) -> Pipeline:
    """``texts_to_score`` + model -> ``scored_texts`` and ``scoring_report``."""
    return Pipeline(
        [
            Node(
                score_texts,
                inputs=[
                    "texts_to_score",
                    "fine_tuned_model",
                    "scoring_chunks",
                    "params:scoring",
                    "params:model",
                ],
                outputs=["scored_texts", "scoring_report"],
                name="score_texts",
            )
        ]
    )
