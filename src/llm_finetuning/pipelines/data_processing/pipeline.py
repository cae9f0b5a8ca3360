"""Wiring of the ``data_processing`` pipeline (catalog names: docs/catalog.md)."""

from kedro.pipeline import Node, Pipeline

from llm_finetuning.pipelines.data_processing.nodes import (
    load_raw_splits,
    report_data_quality,
    sample_splits,
    tokenize_splits,
    validate_and_clean,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Load -> validate and clean -> sample -> tokenize -> data quality report.

    ``raw_splits``, ``clean_splits`` and ``cleaning_report`` are not in the catalog:
    they stay in memory, so bad input stops the run before any output is written.
    The report is saved last because it also counts the reviews tokenization
    truncated (``token_length_summary``, made with ``params:model``'s max_length).
    """
    return Pipeline(
        [
            Node(
                load_raw_splits,
                inputs=["raw_reviews", "params:data_processing.source"],
                outputs="raw_splits",
                name="load_raw_splits",
            ),
            Node(
                validate_and_clean,
                inputs=[
                    "raw_splits",
                    "params:data_processing.source",
                    "params:data_processing.cleaning",
                ],
                outputs=["clean_splits", "cleaning_report", "label_names"],
                name="validate_and_clean",
            ),
            Node(
                sample_splits,
                inputs=[
                    "clean_splits",
                    "params:data_processing.sampling",
                    "params:runtime.seed",
                ],
                outputs=["train_reviews", "validation_reviews", "test_reviews"],
                name="sample_splits",
            ),
            Node(
                tokenize_splits,
                inputs=[
                    "train_reviews",
                    "validation_reviews",
                    "test_reviews",
                    "params:model",
                    "params:data_processing.tokenization",
                ],
                outputs=["tokenized_reviews", "token_length_summary"],
                name="tokenize_splits",
            ),
            Node(
                report_data_quality,
                inputs=[
                    "cleaning_report",
                    "train_reviews",
                    "validation_reviews",
                    "test_reviews",
                    "token_length_summary",
                ],
                outputs="data_quality_report",
                name="report_data_quality",
            ),
        ]
    )
