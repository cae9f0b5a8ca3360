"""Texts to score, read in fixed-size chunks: memory stays flat however large the input.

A Kedro dataset loads a whole object; :class:`TextSourceDataset` loads a
:class:`TextSource` instead, a handle that streams the files (Parquet, CSV, JSON Lines,
or a Hugging Face dataset saved with ``save_to_disk``) as Arrow record batches of
exactly ``chunk_size`` rows (the last one shorter). Chunks are cut the same way on
every run, so a resumed job finds the chunk it stopped at, and the handle's
``fingerprint`` (paths, sizes and modification times) says whether the input changed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
from kedro.io import AbstractDataset, DatasetError

FORMATS = ("parquet", "csv", "jsonl", "hf_disk")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}


def _infer_format(files: Sequence[Path], path: str) -> str:
    formats = {_SUFFIXES.get(f.suffix.lower()) for f in files}
    if len(formats) != 1 or None in formats:
        raise DatasetError(
            f"Cannot tell the format of '{path}' from its file names "
            f"({sorted({f.suffix for f in files})}): set file_format to one of {FORMATS}"
        )
    return formats.pop()


@dataclass
class TextSource:
    """A streamable table of texts: ``files`` in ``file_format``, read in order."""

    path: str
    file_format: str
    files: list[Path] = field(default_factory=list)
    load_args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """How error messages name the source."""
        return f"texts_to_score ('{self.path}', {self.file_format})"

    def _dataset(self) -> pads.Dataset:
        if self.file_format == "hf_disk":
            from datasets import load_from_disk

            table = load_from_disk(self.path, **self.load_args)
            if hasattr(table, "keys"):  # a DatasetDict: pick the split
                raise DatasetError(
                    f"'{self.path}' holds a DatasetDict {list(table)}: point path "
                    "at one split's folder"
                )
            return pads.dataset(table.data.table)
        file_format: Any = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}[
            self.file_format
        ]
        if self.file_format == "csv" and self.load_args:
            import pyarrow.csv as pacsv

            file_format = pads.CsvFileFormat(
                parse_options=pacsv.ParseOptions(**self.load_args)
            )
        return pads.dataset([str(f) for f in self.files], format=file_format)

    @property
    def columns(self) -> list[str]:
        if self.file_format == "jsonl":
            return _jsonl_columns(self.files)
        return list(self._dataset().schema.names)

    def count_rows(self) -> int | None:
        """Rows in the input, read from metadata where that is cheap (Parquet, Arrow)."""
        if self.file_format in ("parquet", "hf_disk"):
            return self._dataset().count_rows()
        return None

    def fingerprint(self) -> str:
        """Changes when any file is replaced, grows or is touched."""
        facts: list[Any] = [self.file_format, self.load_args]
        files = self.files or sorted(Path(self.path).rglob("*"))
        for f in files:
            if f.is_file():
                stat = f.stat()
                facts.append([str(f.resolve()), stat.st_size, stat.st_mtime_ns])
        digest = hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()
        return digest[:16]

    def check_columns(self, required: Sequence[str]) -> None:
        """Raise ``ValueError`` naming the source and each missing column."""
        present = self.columns
        missing = [c for c in required if c not in present]
        if missing:
            raise ValueError(
                f"{self.describe()} has no column {', '.join(map(repr, missing))}; "
                f"its columns are {present}. Set scoring.text_column / "
                "scoring.id_column to columns it has"
            )

    def iter_chunks(
        self, columns: Sequence[str], chunk_size: int
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of exactly ``chunk_size`` rows of ``columns`` (the last shorter).

        JSON Lines are parsed here, line by line, so that a text that is not a string
        (a number, a list) is kept as a null with its type in :data:`TEXT_TYPE_COLUMN`
        instead of failing the whole file; the first column is the text column.
        """
        if self.file_format == "jsonl":
            batches = _jsonl_batches(self.files, list(columns), min(chunk_size, 8192))
        else:
            batches = (
                self._dataset()
                .scanner(columns=list(columns), batch_size=min(chunk_size, 65_536))
                .to_batches()
            )
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for whole in batches:
            rest = whole
            while rest.num_rows:
                take = min(chunk_size - pending_rows, rest.num_rows)
                pending.append(rest.slice(0, take))
                pending_rows += take
                rest = rest.slice(take)
                if pending_rows == chunk_size:
                    yield _concat(pending)
                    pending, pending_rows = [], 0
        if pending_rows:
            yield _concat(pending)


# Set on JSON Lines chunks: the type of a text that is not a string, else null.
TEXT_TYPE_COLUMN = "__text_type__"
_SAMPLED_LINES = 1000


def _jsonl_columns(files: Sequence[Path]) -> list[str]:
    """The fields of the first lines (JSON Lines carry no schema)."""
    names: dict[str, None] = {}
    with open(files[0], encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if number >= _SAMPLED_LINES:
                break
            if line.strip():
                names.update(dict.fromkeys(json.loads(line)))
    return list(names)


def _jsonl_batches(
    files: Sequence[Path], columns: list[str], rows: int
) -> Iterator[pa.RecordBatch]:
    text_column, other_columns = columns[0], columns[1:]

    def batch(records: list[dict[str, Any]]) -> pa.RecordBatch:
        texts = [r.get(text_column) for r in records]
        arrays = {
            text_column: pa.array(
                [t if isinstance(t, str) else None for t in texts], pa.string()
            ),
            TEXT_TYPE_COLUMN: pa.array(
                [
                    None if t is None or isinstance(t, str) else type(t).__name__
                    for t in texts
                ],
                pa.string(),
            ),
        }
        for name in other_columns:
            try:
                arrays[name] = pa.array([r.get(name) for r in records])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                raise ValueError(
                    f"Column {name!r} of {files} mixes types: {error}"
                ) from error
        return pa.RecordBatch.from_pydict(arrays)

    records: list[dict[str, Any]] = []
    for path in files:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path}, line {number}: not valid JSON ({error})"
                    ) from error
                if len(records) == rows:
                    yield batch(records)
                    records = []
    if records:
        yield batch(records)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class TextSourceDataset(AbstractDataset[None, TextSource]):
    """Loads a :class:`TextSource` handle over files of texts; nothing is read yet.

    ``path`` is a file, a folder (every file in it, sorted) or a glob pattern.
    ``file_format`` is inferred from the suffixes unless given: ``parquet``, ``csv``,
    ``jsonl`` or ``hf_disk`` (a Hugging Face ``Dataset.save_to_disk`` folder, read
    memory-mapped). ``load_args`` go to the CSV parser or ``load_from_disk``.

    Example catalog entry::

        texts_to_score:
          type: llm_finetuning.datasets.TextSourceDataset
          path: data/01_raw/texts_to_score.parquet
    """

    def __init__(
        self,
        *,
        path: str,
        file_format: str | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if file_format is not None and file_format not in FORMATS:
            raise DatasetError(
                f"file_format must be one of {FORMATS}, not {file_format!r}"
            )
        self._path = str(path)
        self._file_format = file_format
        self._load_args = dict(load_args or {})
        self.metadata = metadata

    def _files(self) -> list[Path]:
        path = Path(self._path)
        if path.is_file():
            return [path]
        if path.is_dir():
            return sorted(
                p for p in path.rglob("*") if p.is_file() and not _hidden(p, path)
            )
        return sorted(Path(p) for p in glob.glob(self._path) if Path(p).is_file())

    def load(self) -> TextSource:
        if self._file_format == "hf_disk":
            if not Path(self._path).is_dir():
                raise DatasetError(f"No Hugging Face dataset folder at '{self._path}'")
            return TextSource(self._path, "hf_disk", [], self._load_args)
        files = self._files()
        if not files:
            raise DatasetError(f"No files to score at '{self._path}'")
        file_format = self._file_format or _infer_format(files, self._path)
        return TextSource(self._path, file_format, files, self._load_args)

    def save(self, data: None) -> None:
        raise DatasetError("TextSourceDataset is read-only")

    def _exists(self) -> bool:
        return bool(self._files()) or os.path.isdir(self._path)

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "file_format": self._file_format}


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)
