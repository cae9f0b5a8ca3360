"""The Spark engine in local mode with two workers, on real IMDB text.

Its output must equal the local engine's on the same rows: the same labels, and
probabilities within float tolerance (both run the same ``score_batch``).
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from llm_finetuning.datasets import (
    AtomicParquetDataset,
    ChunkStoreDataset,
    TextSourceDataset,
)
from llm_finetuning.pipelines.scoring.nodes import score_texts
from llm_finetuning.pipelines.scoring.params import ScoringParams
from tests.pipelines.scoring.conftest import model_params
from tests.pipelines.scoring.test_real_imdb import imdb_slice

ROWS = 300


@pytest.fixture(scope="module")
def spark_session():
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java: install a JRE (Debian: openjdk-17-jre-headless)")
    pytest.importorskip("pyspark", reason="pyspark is not installed")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need torch
    session = (
        SparkSession.builder.master("local[2]")
        .appName("test_scoring_spark")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


def _score(tmp_path, classifier, path, engine, name):
    params = ScoringParams(
        engine=engine,
        id_column="review_id",
        chunk_size=128,
        batch_size=16,
        num_threads=1,
        progress_bar=False,
        spark={"num_partitions": 2, "arrow_batch_rows": 64},
    )
    source = TextSourceDataset(path=str(path)).load()
    store = ChunkStoreDataset(path=str(tmp_path / f"partial-{name}")).load()
    scored, report = score_texts(source, classifier, store, params, model_params(128))
    output = AtomicParquetDataset(path=str(tmp_path / f"{name}.parquet"))
    output.save(scored)
    frame = output.load().sort_values("review_id").reset_index(drop=True)
    return frame, report


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.imdb
def test_spark_local_2_equals_the_local_engine(
    spark_session, imdb_dir, tmp_path, classifier
):
    path = imdb_slice(imdb_dir, tmp_path / "reviews.parquet", rows=ROWS)
    local, _ = _score(tmp_path, classifier, path, "local", "local")
    spark, report = _score(tmp_path, classifier, path, "spark", "spark")

    assert report["engine"] == "spark" and report["partitions"] == 2
    assert report["rows"] == report["scored"] == ROWS
    assert spark["review_id"].tolist() == local["review_id"].tolist()
    assert (spark["predicted_label"] == local["predicted_label"]).all()
    assert (spark["label_name"] == local["label_name"]).all()
    for column in ("prob_negative", "prob_positive"):
        np.testing.assert_allclose(spark[column], local[column], atol=1e-5)
    assert (spark["model_version"] == local["model_version"]).all()
    assert (tmp_path / "spark.parquet").is_dir()  # Spark's part files, swapped in


@pytest.mark.spark
@pytest.mark.slow
def test_spark_counts_bad_rows_like_the_local_engine(
    spark_session, tmp_path, classifier
):
    texts = ["good", None, "", "fine", "good"]
    frame = pd.DataFrame({"text": texts, "review_id": ["a", "b", "c", "d", "a"]})
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    _, local = _score(tmp_path, classifier, path, "local", "bad-local")
    _, spark = _score(tmp_path, classifier, path, "spark", "bad-spark")
    assert spark["invalid"] == local["invalid"] == {"empty": 1, "null": 1}
    assert spark["duplicates"]["examples"] == local["duplicates"]["examples"]
