"""Scoring real IMDB reviews (skipped where the files are absent)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_finetuning.datasets import (
    AtomicParquetDataset,
    ChunkStoreDataset,
    TextSourceDataset,
)
from llm_finetuning.pipelines.scoring.nodes import score_texts
from llm_finetuning.pipelines.scoring.params import ScoringParams
from tests.pipelines.scoring.conftest import model_params

ROWS = 600


def imdb_slice(imdb_dir, path, rows: int = ROWS, split: str = "unsupervised"):
    """The first ``rows`` reviews of a split, with a string id, as Parquet."""
    name = (
        f"{split}.parquet"
        if (imdb_dir / f"{split}.parquet").is_file()
        else "test.parquet"
    )
    table = pq.read_table(imdb_dir / name, columns=["text"]).slice(0, rows)
    table = table.append_column(
        "review_id", pa.array([f"r{i:05d}" for i in range(rows)])
    )
    pq.write_table(table, path, row_group_size=250)
    return path


@pytest.mark.imdb
def test_real_reviews_are_all_scored_and_long_ones_truncated(
    imdb_dir, tmp_path, classifier
):
    path = imdb_slice(imdb_dir, tmp_path / "reviews.parquet")
    params = ScoringParams(
        id_column="review_id", chunk_size=256, batch_size=32, progress_bar=False
    )
    source = TextSourceDataset(path=str(path)).load()
    store = ChunkStoreDataset(path=str(tmp_path / "partial")).load()
    chunks, report = score_texts(source, classifier, store, params, model_params(128))
    output = AtomicParquetDataset(path=str(tmp_path / "scored.parquet"))
    output.save(chunks)
    scored = output.load()

    assert len(scored) == ROWS and report["chunks"] == 3
    assert scored["review_id"].tolist() == [f"r{i:05d}" for i in range(ROWS)]
    assert report["scored"] == ROWS and report["invalid"] == {}
    # Most IMDB reviews are longer than 128 tokens of the demo tokenizer.
    assert ROWS // 2 < report["truncated"] < ROWS
    assert report["duplicates"]["duplicated_ids"] == 0
    probabilities = scored[["prob_negative", "prob_positive"]].to_numpy(float)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert report["reviews_per_second"] > 0
