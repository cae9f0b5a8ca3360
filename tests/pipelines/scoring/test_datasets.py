"""The scoring datasets: chunked reading, atomic chunk and table writes."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kedro.io import DatasetError

from llm_finetuning.datasets import (
    AtomicParquetDataset,
    ChunkStoreDataset,
    TextSourceDataset,
)
from llm_finetuning.datasets.text_source import TEXT_TYPE_COLUMN
from tests.pipelines.scoring.conftest import write_parquet


def _rows(source, chunk_size, columns=("text", "id")):
    return [b.num_rows for b in source.iter_chunks(list(columns), chunk_size)]


def test_parquet_is_read_in_exact_chunks_across_row_groups_and_files(tmp_path):
    folder = tmp_path / "in"
    write_parquet(folder / "a.parquet", {"text": ["x"] * 20, "id": list(range(20))})
    write_parquet(folder / "b.parquet", {"text": ["y"] * 5, "id": list(range(20, 25))})
    source = TextSourceDataset(path=str(folder)).load()

    assert source.file_format == "parquet"
    assert source.count_rows() == 25
    assert _rows(source, 8) == [8, 8, 8, 1]
    ids = [
        i for b in source.iter_chunks(["text", "id"], 8) for i in b["id"].to_pylist()
    ]
    assert ids == list(range(25))  # input order


def test_fingerprint_changes_when_a_file_changes(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"text": ["a"], "id": [1]})
    before = TextSourceDataset(path=str(path)).load().fingerprint()
    assert TextSourceDataset(path=str(path)).load().fingerprint() == before
    write_parquet(path, {"text": ["a", "b"], "id": [1, 2]})
    assert TextSourceDataset(path=str(path)).load().fingerprint() != before


def test_csv_and_jsonl_stream_too(tmp_path):
    (tmp_path / "t.csv").write_text('text,id\n"a, quoted",1\nb,2\nc,3\n')
    csv = TextSourceDataset(path=str(tmp_path / "t.csv")).load()
    assert _rows(csv, 2) == [2, 1]
    lines = [{"text": "fine", "id": 1}, {"text": 5, "id": 2}, {"text": None, "id": 3}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    jsonl = TextSourceDataset(path=str(tmp_path / "t.jsonl")).load()
    (batch,) = jsonl.iter_chunks(["text", "id"], 10)
    # A number where a text should be is kept (as null + its type), not a crash.
    assert batch["text"].to_pylist() == ["fine", None, None]
    assert batch[TEXT_TYPE_COLUMN].to_pylist() == [None, "int", None]


def test_hf_dataset_folder(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"text": ["a", "b", "c"], "id": [1, 2, 3]}).save_to_disk(
        tmp_path / "hf"
    )
    source = TextSourceDataset(path=str(tmp_path / "hf"), file_format="hf_disk").load()
    assert _rows(source, 2) == [2, 1]


def test_a_missing_column_names_the_source_and_the_column(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"body": ["a"]})
    source = TextSourceDataset(path=str(path)).load()
    with pytest.raises(ValueError, match=r"t\.parquet.*no column 'text'.*\['body'\]"):
        source.check_columns(["text"])


def test_no_files_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="No files to score"):
        TextSourceDataset(path=str(tmp_path / "nothing*.parquet")).load()


def test_chunks_are_atomic_and_other_jobs_are_cleared(tmp_path):
    store = ChunkStoreDataset(path=str(tmp_path / "partial")).load()
    old = store.job("old", {})
    old.write(0, pa.table({"x": [1]}), {"rows": 1})
    job = store.job("new", {"input": "abc"})
    assert not old.folder.exists()  # another key's chunks can never be reused
    (job.folder / ".chunk-000001.parquet.tmp-dead").write_bytes(b"half")  # a kill
    job = store.job("new", {"input": "abc"})
    assert not list(job.folder.glob(".*tmp-*"))
    job.write(1, pa.table({"x": [2, 3]}), {"rows": 2})
    job.write(0, pa.table({"x": [1]}), {"rows": 1})
    assert job.completed() == {0, 1}
    assert job.stats(1) == {"rows": 2}

    output = AtomicParquetDataset(path=str(tmp_path / "out.parquet"))
    output.save(job.assembled(2))
    assert output.load()["x"].tolist() == [1, 2, 3]
    assert not job.folder.exists()  # cleared once the output is written
    with pytest.raises(DatasetError, match=r"Chunks \[1\] of 2 are missing"):
        _missing(store)


def _missing(store):
    job = store.job("k", {})
    job.write(0, pa.table({"x": [1]}), {})
    return job.assembled(2)


def test_a_failed_save_keeps_the_previous_table(tmp_path):
    output = AtomicParquetDataset(path=str(tmp_path / "out.parquet"))
    output.save(pa.table({"x": [1]}))

    def failing():
        yield pa.table({"x": [2]})
        raise RuntimeError("killed halfway")

    with pytest.raises(DatasetError, match="killed halfway"):
        output.save(failing())
    assert output.load()["x"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 1
