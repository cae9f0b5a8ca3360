"""Wiring of the ``evaluation`` pipeline (catalog: conf/base/catalog_evaluation.yml)."""

from kedro.pipeline import Node, Pipeline

from llm_finetuning.pipelines.evaluation.nodes import (
    accuracy_by_length,
    compare_with_baselines,
    metrics_for_mlflow,
    most_confident_mistakes,
    plot_accuracy_by_length,
    plot_confusion_matrix,
    plot_reliability_diagram,
    plot_roc_curve,
    predict_majority_class,
    predict_test_set,
    predict_tfidf_logreg,
    score_classifier,
)

SCORING = "params:evaluation.scoring"
REPORT = "params:evaluation.report"
SEED = "params:runtime.seed"


def create_scoring_pipeline() -> Pipeline:
    """Score, plot and explain the predictions frame ``test_predictions``.

    It needs only predictions, ``test_reviews`` and ``label_names``, so any classifier
    reuses it under a namespace, e.g. the Azure OpenAI deployment::

        pipeline(
            create_scoring_pipeline(),
            namespace="azure_openai",
            inputs={"test_reviews", "label_names"},
            parameters={
                "params:evaluation.scoring": "params:evaluation.scoring",
                "params:runtime.seed": "params:runtime.seed",
                "params:evaluation.report": "params:deployment.azure_openai.report",
            },
        )

    reads ``azure_openai.test_predictions`` and writes ``azure_openai.evaluation_metrics``,
    ``azure_openai.confusion_matrix_plot``, ... Kedro namespaces parameters too, hence
    the explicit mapping (the report block names the model in figure titles).
    """
    return Pipeline(
        [
            Node(
                score_classifier,
                inputs=["test_predictions", "label_names", SCORING, SEED],
                outputs="evaluation_metrics",
                name="score_test_predictions",
            ),
            Node(
                plot_confusion_matrix,
                inputs=["evaluation_metrics", REPORT],
                outputs="confusion_matrix_plot",
                name="plot_confusion_matrix",
            ),
            Node(
                plot_roc_curve,
                inputs=["test_predictions", "label_names", REPORT],
                outputs="roc_curve_plot",
                name="plot_roc_curve",
            ),
            Node(
                plot_reliability_diagram,
                inputs=["test_predictions", "label_names", SCORING, REPORT],
                outputs="reliability_diagram",
                name="plot_reliability_diagram",
            ),
            Node(
                accuracy_by_length,
                inputs=["test_predictions", "test_reviews", "label_names", REPORT],
                outputs="accuracy_by_length",
                name="accuracy_by_length",
            ),
            Node(
                plot_accuracy_by_length,
                inputs=["accuracy_by_length", REPORT],
                outputs="accuracy_by_length_plot",
                name="plot_accuracy_by_length",
            ),
            Node(
                most_confident_mistakes,
                inputs=["test_predictions", "test_reviews", "label_names", REPORT],
                outputs="error_analysis",
                name="most_confident_mistakes",
            ),
        ]
    )


def create_baselines_pipeline() -> Pipeline:
    """Majority class and TF-IDF + logistic regression, trained on ``train_reviews``,
    predicted on ``test_reviews`` and scored like the model."""
    return Pipeline(
        [
            Node(
                predict_majority_class,
                inputs=["train_reviews", "test_reviews", "label_names"],
                outputs="majority_class_predictions",
                name="predict_majority_class",
            ),
            Node(
                predict_tfidf_logreg,
                inputs=[
                    "train_reviews",
                    "test_reviews",
                    "label_names",
                    "params:evaluation.baselines.tfidf_logreg",
                    SEED,
                ],
                outputs="tfidf_logreg_predictions",
                name="predict_tfidf_logreg",
            ),
            Node(
                score_classifier,
                inputs=["majority_class_predictions", "label_names", SCORING, SEED],
                outputs="majority_class_metrics",
                name="score_majority_class",
            ),
            Node(
                score_classifier,
                inputs=["tfidf_logreg_predictions", "label_names", SCORING, SEED],
                outputs="tfidf_logreg_metrics",
                name="score_tfidf_logreg",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Predict the test set -> score, plot, explain -> baselines -> comparison -> MLflow."""
    return (
        Pipeline(
            [
                Node(
                    predict_test_set,
                    inputs=[
                        "fine_tuned_model",
                        "tokenized_reviews",
                        "label_names",
                        "params:evaluation.inference",
                    ],
                    outputs="test_predictions",
                    name="predict_test_set",
                )
            ]
        )
        + create_scoring_pipeline()
        + create_baselines_pipeline()
        + Pipeline(
            [
                Node(
                    compare_with_baselines,
                    inputs={
                        "evaluation_metrics": "evaluation_metrics",
                        "majority_class_metrics": "majority_class_metrics",
                        "tfidf_logreg_metrics": "tfidf_logreg_metrics",
                        "test_predictions": "test_predictions",
                        "majority_class_predictions": "majority_class_predictions",
                        "tfidf_logreg_predictions": "tfidf_logreg_predictions",
                        "label_names": "label_names",
                        "scoring": SCORING,
                        "report": REPORT,
                        "seed": SEED,
                    },
                    outputs=["baseline_comparison", "baseline_comparison_table"],
                    name="compare_with_baselines",
                ),
                Node(
                    metrics_for_mlflow,
                    inputs=["evaluation_metrics", "baseline_comparison"],
                    outputs="evaluation_mlflow_metrics",
                    name="log_metrics_to_mlflow",
                ),
            ]
        )
    )
