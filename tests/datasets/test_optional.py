"""``OptionalDataset``: the wrapped dataset, or None before anything was saved."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import AbstractDataset


@pytest.fixture
def dataset(tmp_path):
    return AbstractDataset.from_config(
        "predictions",
        {
            "type": "llm_finetuning.datasets.OptionalDataset",
            "dataset": {
                "type": "pandas.ParquetDataset",
                "filepath": str(tmp_path / "out" / "predictions.parquet"),
            },
        },
    )


def test_it_loads_none_until_saved_then_the_data_with_its_source(dataset, tmp_path):
    assert not dataset.exists() and dataset.load() is None
    dataset.save(pd.DataFrame({"row_id": [1, 2]}))
    assert (tmp_path / "out" / "predictions.parquet").is_file()
    loaded = dataset.load()
    assert loaded["row_id"].tolist() == [1, 2]
    source = loaded.attrs["source"]
    assert source["filepath"].endswith("predictions.parquet")
    assert source["modified"].endswith("+00:00")  # UTC, ISO 8601


def test_kedro_viz_previews_the_wrapped_type(dataset):
    dataset.save(pd.DataFrame({"row_id": range(20)}))
    assert len(dataset.preview(nrows=3)["data"]) == 3
    assert dataset._describe()["filepath"].endswith("predictions.parquet")
