"""Nodes of the ``scoring`` pipeline.

One node: it picks the model (the catalog's ``fine_tuned_model`` or an MLflow model
URI, ``scoring.model``), the engine (``scoring.engine``) and, on the local engine,
what runs the model (``scoring.runtime``: torch, or ONNX Runtime fp32 / int8), and
returns the scored rows for the catalog to write atomically, with a small report. The engines live in
:mod:`~llm_finetuning.pipelines.scoring.engine` (local: chunked, resumable) and
:mod:`~llm_finetuning.pipelines.scoring.spark_engine`; they are imported when the node
runs, so building the pipeline imports neither torch nor Spark.
"""

from __future__ import annotations

from typing import Any

from llm_finetuning.models import ModelParams
from llm_finetuning.pipelines.scoring.params import ScoringParams
from llm_finetuning.truncation import Truncation


def score_texts(
    texts_to_score: Any,
    fine_tuned_model: Any,
    scoring_chunks: Any,
    scoring: ScoringParams,
    model: ModelParams,
) -> tuple[Any, dict[str, Any]]:
    """Predicted label, its name and one probability per class for every input row.

    Args:
        texts_to_score: A :class:`~llm_finetuning.datasets.TextSource` (files) or a
            Spark ``DataFrame`` (a table).
        fine_tuned_model: The catalog's model; used when ``scoring.model`` is
            ``fine_tuned_model``.
        scoring_chunks: The :class:`~llm_finetuning.datasets.ChunkStore` where the
            local engine keeps finished chunks until the output is written.
        scoring: The ``scoring`` parameters (validated by Kedro before the run).
        model: The ``model`` parameters: texts are cut as in training
            (``max_length``, ``truncation``, ``head_tokens``). An MLflow model cuts as
            its config says (how it was logged), so scored and served answers agree.

    Returns:
        ``scored_texts`` (chunks, or a Spark ``DataFrame``) and ``scoring_report``
        (rows, invalid texts by reason, truncations, duplicate ids, throughput).
    """
    from llm_finetuning.pipelines.scoring.engine import resolve_model, score_locally

    spark_input = type(texts_to_score).__module__.startswith("pyspark")
    truncation = Truncation(model.max_length, model.truncation, model.head_tokens)
    scoring_model = resolve_model(fine_tuned_model, scoring, truncation)
    if scoring.runtime != "torch":
        if scoring.engine == "spark":
            raise ValueError(
                f"scoring.runtime {scoring.runtime!r} is an option of the local engine; "
                "the spark engine runs torch (set scoring.runtime to 'torch')"
            )
        from llm_finetuning.pipelines.scoring.onnx_runtime import OnnxClassifier

        scoring_model.runtime = OnnxClassifier.from_classifier(
            scoring_model.classifier,
            scoring.onnx_cache_dir,
            quantized=scoring.runtime == "onnx_int8",
            num_threads=scoring.num_threads,
        )
    if scoring.engine == "spark":
        from llm_finetuning.pipelines.scoring.spark_engine import score_with_spark

        return score_with_spark(texts_to_score, scoring_model, scoring_chunks, scoring)
    if spark_input:
        raise ValueError(
            "texts_to_score is a Spark DataFrame: set scoring.engine to 'spark' "
            "(the local engine reads Parquet, CSV, JSON Lines or Hugging Face files)"
        )
    return score_locally(texts_to_score, scoring_model, scoring_chunks, scoring)
