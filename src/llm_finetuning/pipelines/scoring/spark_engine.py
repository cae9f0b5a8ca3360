"""The Spark engine: the local engine's :func:`score_batch` in every Python worker.

The input (a Unity Catalog table on Databricks, the ``texts_to_score`` files locally)
is repartitioned as ``scoring.spark`` says, and ``DataFrame.mapInArrow`` hands each
worker Arrow batches of its partition: the worker loads the model once (from the
model folder, or the MLflow model URI, wherever the worker runs) and scores each batch
exactly as the local engine scores a chunk, so both engines give the same labels and
probabilities for the same rows. The result is persisted once, counted for the
report, and written by the catalog (``AtomicParquetDataset`` locally, a Delta table
through ``databricks.ManagedTableDataset`` on Databricks, whose overwrite is one
transaction).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from llm_finetuning.pipelines.scoring.engine import (
    INVALID_REASON,
    ROW_ID,
    ScoringModel,
    duplicate_ids,
    job_key,
    log_report,
    output_schema,
    score_batch,
)
from llm_finetuning.pipelines.scoring.params import ScoringParams
from llm_finetuning.truncation import Truncation

logger = logging.getLogger(__name__)

# One model per worker process, kept between the tasks it runs.
_WORKER_MODELS: dict[str, ScoringModel] = {}


def spark_session(params: ScoringParams) -> Any:
    """The running Spark session, or a new one on ``scoring.spark.master``."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Workers must run this interpreter (torch, transformers), not PATH's python3.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(params.spark.master)
        .appName("llm_finetuning.scoring")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def read_texts(spark: Any, texts: Any) -> tuple[Any, str]:
    """A Spark DataFrame of ``texts_to_score`` and how errors name it."""
    from pyspark.sql import DataFrame

    if isinstance(texts, DataFrame):
        return texts, "texts_to_score (Spark table)"
    files = [str(f) for f in texts.files]
    readers = {
        "parquet": lambda: spark.read.parquet(*files),
        "csv": lambda: spark.read.csv(files, header=True, multiLine=True, escape='"'),
        "jsonl": lambda: spark.read.json(files),
    }
    if texts.file_format not in readers:
        raise ValueError(
            f"{texts.describe()}: the Spark engine reads Parquet, CSV and JSON Lines; "
            "save the dataset as Parquet or use scoring.engine: local"
        )
    return readers[texts.file_format](), texts.describe()


def _worker_model(location: str, identity: str) -> ScoringModel:
    if location not in _WORKER_MODELS:
        from llm_finetuning.datasets.model_folder import TextClassifierDataset
        from llm_finetuning.pipelines.scoring.engine import load_mlflow_classifier

        if Path(location).is_dir():
            classifier = TextClassifierDataset(path=location).load()
        else:
            classifier = load_mlflow_classifier(location)
        if classifier.tokenizer.pad_token_id is None:
            classifier.tokenizer.pad_token = classifier.tokenizer.eos_token
        _WORKER_MODELS[location] = ScoringModel(classifier, identity, location)
    return _WORKER_MODELS[location]


def score_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    location: str,
    identity: str,
    text_column: str,
    id_column: str,
    batch_size: int,
    truncation: Truncation,
    device: str,
    num_threads: int,
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` function: score each Arrow batch of a partition.

    Texts are cut as the driver says (``truncation``), not as the worker's copy of
    the model would default to, so both engines cut alike.
    """
    import torch

    torch.set_num_threads(num_threads)
    model = replace(_worker_model(location, identity), truncation=truncation)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        table, _ = score_batch(
            batch,
            model=model,
            text_column=text_column,
            id_column=id_column,
            first_row=0,
            batch_size=batch_size,
            device=device,
        )
        yield from table.to_batches()


def model_location(model: ScoringModel, store: Any) -> str:
    """Where workers load the model: its URI, or a copy of the folder in the store.

    The catalog hands the driver a loaded model, not a path; the copy goes into the
    scoring scratch folder (a Unity Catalog Volume on Databricks, which every worker
    reads).
    """
    if model.location:
        return model.location
    from llm_finetuning.datasets.model_folder import TextClassifierDataset

    folder = Path(store.root) / "spark_model" / job_key({"model": model.identity})
    if not (folder / "config.json").is_file():
        TextClassifierDataset(path=str(folder)).save(model.classifier)
    return str(folder)


def score_with_spark(
    texts: Any,
    model: ScoringModel,
    store: Any,
    params: ScoringParams,
) -> tuple[Any, dict[str, Any]]:
    """The scored rows as a (persisted) Spark DataFrame, and the report."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_type

    spark = spark_session(params)
    frame, described = read_texts(spark, texts)
    required = [params.text_column] + ([params.id_column] if params.id_column else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{described} has no column {', '.join(map(repr, missing))}; its columns "
            f"are {frame.columns}. Set scoring.text_column / scoring.id_column to "
            "columns it has"
        )
    id_column = params.id_column
    if id_column is None:  # row_id = position in the input, as the local engine numbers
        id_column = ROW_ID
        frame = (
            frame.select(params.text_column)
            .rdd.zipWithIndex()
            .map(lambda pair: (pair[0][0], pair[1]))
            .toDF([params.text_column, ROW_ID])
        )
    frame = frame.select(params.text_column, id_column)
    rows = frame.count()
    if rows == 0:
        raise ValueError(f"{described} holds no rows")
    partitions = params.spark.num_partitions or (
        math.ceil(rows / params.spark.rows_per_partition)
        if params.spark.rows_per_partition
        else None
    )
    if partitions:
        frame = frame.repartition(partitions)
    spark.conf.set(
        "spark.sql.execution.arrow.maxRecordsPerBatch", params.spark.arrow_batch_rows
    )
    id_type = to_arrow_type(frame.schema[id_column].dataType)
    schema = output_schema(model.label_names, pa.field(id_column, id_type))
    location = model_location(model, store)
    started = time.perf_counter()
    scored = frame.mapInArrow(
        partial(
            score_partition,
            location=location,
            identity=model.identity,
            text_column=params.text_column,
            id_column=id_column,
            batch_size=params.batch_size,
            truncation=model.truncation,
            device=params.device,
            num_threads=params.num_threads or 1,
        ),
        from_arrow_schema(schema),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    invalid = {
        row[INVALID_REASON]: row["count"]
        for row in scored.where(F.col(INVALID_REASON).isNotNull())
        .groupBy(INVALID_REASON)
        .count()
        .collect()
    }
    elapsed = time.perf_counter() - started
    report: dict[str, Any] = {
        "source": described,
        "model": model.identity,
        "engine": "spark",
        "truncation": model.truncation.as_config(),
        "partitions": scored.rdd.getNumPartitions(),
        "rows": rows,
        "scored": rows - sum(invalid.values()),
        "truncated": None,  # counted by the local engine only
        "invalid": dict(sorted(invalid.items())),
        "seconds": round(elapsed, 3),
        "reviews_per_second": round(rows / elapsed, 2) if elapsed else None,
    }
    if params.id_column:
        report["duplicates"] = _duplicates(scored, id_column)
    log_report({**report, "truncated": 0})
    return scored, report


def _duplicates(scored: Any, id_column: str) -> dict[str, Any]:
    from pyspark.sql import functions as F

    counts = (
        scored.where(F.col(id_column).isNotNull())
        .groupBy(id_column)
        .count()
        .where(F.col("count") > 1)
    )
    summary = counts.agg(
        F.count("*").alias("ids"), F.sum("count").alias("rows")
    ).collect()[0]
    examples = counts.orderBy(F.col("count").desc()).limit(20).collect()
    nulls = scored.where(F.col(id_column).isNull()).count()
    values = [row[id_column] for row in examples]
    report = duplicate_ids(pa.array([], pa.int64()))  # the same keys as locally
    report.update(
        duplicated_ids=int(summary["ids"] or 0),
        rows_with_duplicated_ids=int(summary["rows"] or 0),
        examples=[
            {"id": value, "rows": row["count"]}
            for value, row in zip(values, examples, strict=True)
        ],
        null_ids=int(nulls),
    )
    return report
