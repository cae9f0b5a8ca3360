"""Chunked, resumable, atomic output of the ``scoring`` pipeline.

:class:`ChunkStoreDataset` loads a :class:`ChunkStore`: a scratch folder where a scoring
job writes each finished chunk as its own Parquet file, atomically (a temporary file
renamed into place), under a key made of the input's and the model's fingerprints. A
killed job leaves only complete chunks; the same command finds them and scores only
the rest. :class:`AtomicParquetDataset` then writes the assembled table to its final
path through a temporary file renamed over it, so a reader sees the previous table or
the new one, never half of one, and it removes the job's chunks once that is done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from kedro.io import AbstractDataset, DatasetError

_CHUNK = re.compile(r"chunk-(\d{6})\.parquet")
MANIFEST = "manifest.json"
# Per-chunk counts (invalid texts, truncations) travel in the chunk file's schema
# metadata, so a resumed job's report equals an uninterrupted one's.
STATS_KEY = b"llm_finetuning.scoring"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def write_parquet_atomically(path: Path, tables: Iterable[pa.Table]) -> int:
    """Write ``tables`` (one schema) to ``path`` through a renamed temporary file.

    Returns the number of rows written. Nothing is left at ``path`` if it fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = _tmp_name(path)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(scratch, table.schema)
            writer.write_table(table)
            rows += table.num_rows
        if writer is None:
            raise DatasetError(f"Nothing to write to '{path}'")
        writer.close()
        writer = None
        _replace(scratch, path)
    except BaseException:
        if writer is not None:
            writer.close()
        _remove(scratch)
        raise
    return rows


def _replace(new: Path, target: Path) -> None:
    """Put ``new`` (file or folder) at ``target``, whatever ``target`` was."""
    if target.is_dir() and not new.is_dir():
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, retired)
        os.replace(new, target)
        shutil.rmtree(retired, ignore_errors=True)
    elif new.is_dir() and target.exists():
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, retired)
        os.replace(new, target)
        _remove(retired)
    else:
        os.replace(new, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _clean_scratch(target: Path) -> None:
    for leftover in target.parent.glob(f".{target.name}.*-*"):
        _remove(leftover)


@dataclass
class ScoredChunks:
    """The chunks of a finished job, in order; read one at a time when written."""

    files: list[Path]
    on_saved: Callable[[], None] | None = None

    def __iter__(self) -> Iterator[pa.Table]:
        for path in self.files:
            table = pq.read_table(path)
            yield table.replace_schema_metadata(None)

    def after_save(self) -> None:
        if self.on_saved is not None:
            self.on_saved()


class ScoringJob:
    """The chunk files of one (input, model, settings) key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def chunk_path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:06d}.parquet"

    def completed(self) -> set[int]:
        return {
            int(match.group(1))
            for match in (_CHUNK.fullmatch(p.name) for p in self.folder.iterdir())
            if match
        }

    def write(self, index: int, table: pa.Table, stats: dict[str, Any]) -> None:
        """Write chunk ``index`` atomically, with ``stats`` in its metadata."""
        metadata = dict(table.schema.metadata or {})
        metadata[STATS_KEY] = json.dumps(stats).encode()
        write_parquet_atomically(
            self.chunk_path(index), [table.replace_schema_metadata(metadata)]
        )

    def stats(self, index: int) -> dict[str, Any]:
        metadata = pq.read_schema(self.chunk_path(index)).metadata or {}
        return json.loads(metadata.get(STATS_KEY, b"{}"))

    def read_column(self, column: str) -> pa.ChunkedArray:
        """One column of every chunk (the ids, for the duplicate check)."""
        files = [self.chunk_path(i) for i in sorted(self.completed())]
        return pa.chunked_array(
            [pq.read_table(f, columns=[column]).column(0) for f in files]
        )

    def assembled(self, n_chunks: int) -> ScoredChunks:
        missing = sorted(set(range(n_chunks)) - self.completed())
        if missing:
            raise DatasetError(
                f"Chunks {missing[:10]} of {n_chunks} are missing in '{self.folder}'"
            )
        return ScoredChunks(
            [self.chunk_path(i) for i in range(n_chunks)],
            on_saved=lambda: shutil.rmtree(self.folder, ignore_errors=True),
        )


class ChunkStore:
    """Scratch folder holding at most one scoring job's chunks."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def job(self, key: str, manifest: dict[str, Any]) -> ScoringJob:
        """The job of ``key``: what an earlier run of it left, or a new folder.

        Chunks of other keys (another input, model or chunk size) can never be
        reused by this job and are removed, as are half-written chunk files.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for other in self.root.iterdir():
            if other.name != key:
                _remove(other)
        folder = self.root / key
        folder.mkdir(exist_ok=True)
        for leftover in folder.glob(".*.tmp-*"):
            _remove(leftover)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            scratch = _tmp_name(manifest_path)
            scratch.write_text(json.dumps(manifest, indent=2, default=str))
            os.replace(scratch, manifest_path)
        return ScoringJob(folder)


class ChunkStoreDataset(AbstractDataset[None, ChunkStore]):
    """Loads the :class:`ChunkStore` of a scratch folder (created when needed).

    Example catalog entry::

        scoring_chunks:
          type: llm_finetuning.datasets.ChunkStoreDataset
          path: data/07_model_output/.scoring_partial
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> ChunkStore:
        return ChunkStore(self._path)

    def save(self, data: None) -> None:
        raise DatasetError("ChunkStoreDataset is written through its ChunkStore")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class AtomicParquetDataset(AbstractDataset[Any, Any]):
    """A Parquet table replaced atomically; saves pandas, Arrow, chunks or Spark.

    * a pandas ``DataFrame``, an Arrow ``Table`` or an iterable of Arrow tables
      (:class:`ScoredChunks`: read and written one chunk at a time) become one
      Parquet file, written to a temporary file renamed over ``path``;
    * a Spark ``DataFrame`` is written by Spark into a scratch folder that then
      replaces ``path`` (a folder of part files).

    ``load`` returns a pandas ``DataFrame`` (``load_args: {columns: [...]}`` to read
    fewer columns).

    Example catalog entry::

        scored_texts:
          type: llm_finetuning.datasets.AtomicParquetDataset
          path: data/07_model_output/scored_texts.parquet
    """

    def __init__(
        self,
        *,
        path: str,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._path = Path(path)
        self._load_args = dict(load_args or {})
        self.metadata = metadata

    def load(self) -> Any:
        if not self._path.exists():
            raise DatasetError(f"No Parquet table at '{self._path}'")
        table = pq.read_table(self._path, **self._load_args)
        # Nullable integers: a text that was not scored has a null predicted_label.
        return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)

    def save(self, data: Any) -> None:
        _clean_scratch(self._path)
        if _is_spark_frame(data):
            self._save_spark(data)
            return
        if isinstance(data, pa.Table):
            tables: Iterable[pa.Table] = [data]
        elif hasattr(data, "to_parquet") and hasattr(data, "columns"):
            tables = [pa.Table.from_pandas(data, preserve_index=False)]
        else:
            tables = data
        write_parquet_atomically(self._path, tables)
        if hasattr(data, "after_save"):
            data.after_save()

    def _save_spark(self, frame: Any) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        scratch = _tmp_name(self._path)
        try:
            frame.write.mode("overwrite").parquet(str(scratch))
            _replace(scratch, self._path)
        except BaseException:
            _remove(scratch)
            raise

    def _exists(self) -> bool:
        return self._path.exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "load_args": self._load_args}


def _is_spark_frame(data: Any) -> bool:
    return type(data).__module__.startswith("pyspark.sql") and hasattr(data, "write")
