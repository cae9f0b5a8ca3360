"""The training pipeline: tokenized reviews in, fine-tuned model and its curves out."""

from kedro.pipeline import Node, Pipeline

from llm_finetuning.pipelines.training.nodes import (
    plot_training_curve,
    train_classifier,
)


def create_pipeline(**kwargs) -> Pipeline:
    """``train_classifier`` then ``plot_training_curve``; see docs/training.md."""
    return Pipeline(
        [
            Node(
                func=train_classifier,
                inputs=[
                    "tokenized_reviews",
                    "label_names",
                    "params:model",
                    "params:training",
                    "params:runtime",
                ],
                outputs=["fine_tuned_model", "training_metrics"],
                name="fit_classifier",
            ),
            Node(
                func=plot_training_curve,
                inputs="training_metrics",
                outputs="training_curve",
                name="plot_training_curve",
            ),
        ]
    )
