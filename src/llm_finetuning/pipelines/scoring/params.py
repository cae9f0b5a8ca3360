"""Typed ``scoring`` parameters (conf/<env>/parameters_scoring.yml).

The node that takes ``params:scoring`` is annotated with :class:`ScoringParams` (a
:class:`llm_finetuning.params.Params`: unknown keys forbidden, frozen), so Kedro
validates the block before any node runs: a misspelt key or a wrong type stops the run
with the key's path. Only pydantic is imported here (``kedro registry list`` must not
pay for torch).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from llm_finetuning.params import Params

CATALOG_MODEL = "fine_tuned_model"
_MODEL_URI = re.compile(
    r"(models:/[^/@]+(@[^/@]+|/\d+)|runs:/.+|/.+|[a-z][a-z0-9+.-]*://.+)"
)


class SparkParams(Params):
    """How the Spark engine splits the work.

    Attributes:
        num_partitions: Repartition the input into this many partitions (one Python
            worker scores one partition at a time); ``None`` derives it from
            ``rows_per_partition``, and without that keeps the input's partitions.
        rows_per_partition: Target rows per partition when ``num_partitions`` is unset.
        arrow_batch_rows: Rows per Arrow batch handed to a worker
            (``spark.sql.execution.arrow.maxRecordsPerBatch``).
        master: ``local[N]`` to start a local session where none is running
            (a Databricks job always has one).
    """

    key: ClassVar[str] = "scoring.spark"

    num_partitions: int | None = Field(default=None, ge=1)
    rows_per_partition: int | None = Field(default=20_000, ge=1)
    arrow_batch_rows: int = Field(default=1024, ge=1)
    master: str = "local[2]"


class ScoringParams(Params):
    """What to score, with which model, on which engine.

    Attributes:
        model: ``fine_tuned_model`` (the catalog's model folder) or an MLflow model
            URI: ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
            ``runs:/<run id>/<path>``.
        engine: ``local`` (this process, chunked and resumable) or ``spark``.
        text_column: Column holding the texts.
        id_column: Column that identifies a row, copied to the output; ``None``
            numbers the rows (``row_id``, 0-based, in input order).
        batch_size: Texts per forward pass (batches are formed after sorting a
            chunk by length, so padding stays small).
        chunk_size: Rows per chunk: the unit of progress, memory and resume.
        device: ``auto`` (CUDA, then MPS, then CPU) or a torch device string.
        num_threads: Torch (or ONNX Runtime) CPU threads; ``None`` keeps the default.
        runtime: What runs the model on the local engine: ``torch`` (default),
            ``onnx`` (ONNX Runtime, fp32) or ``onnx_int8`` (ONNX Runtime with int8
            weights: faster on CPU, labels can differ near the decision boundary;
            docs/scoring.md gives the measured accuracy difference). The ONNX file is
            exported on first use and cached (:mod:`.onnx_runtime`).
        onnx_cache_dir: Where the exported ONNX models are cached, one folder per
            model fingerprint (beside the model folder by default).
        progress_bar: Show a progress bar with reviews/s: ``auto`` on a terminal only.
        spark: Settings of the Spark engine.
    """

    key: ClassVar[str] = "scoring"

    model: str = CATALOG_MODEL
    engine: Literal["local", "spark"] = "local"
    text_column: str = "text"
    id_column: str | None = None
    batch_size: int = Field(default=32, ge=1)
    chunk_size: int = Field(default=4096, ge=1)
    device: str = "auto"
    num_threads: int | None = Field(default=None, ge=1)
    runtime: Literal["torch", "onnx", "onnx_int8"] = "torch"
    onnx_cache_dir: str = "data/06_models/onnx_cache"
    progress_bar: bool | Literal["auto"] = "auto"
    spark: SparkParams = Field(default_factory=SparkParams)

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value != CATALOG_MODEL and not _MODEL_URI.fullmatch(value):
            raise ValueError(
                f"model must be {CATALOG_MODEL!r} or an MLflow model URI "
                "(models:/<name>@<alias>, models:/<name>/<version>, runs:/...), "
                f"not {value!r}"
            )
        return value

    @property
    def uses_catalog_model(self) -> bool:
        return self.model == CATALOG_MODEL
