"""The original Large Movie Review Dataset layout (``aclImdb``) as a Kedro dataset."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

# ``train/pos/123_9.txt``: split, label folder, review id, star rating (1-10).
_REVIEW_FILE = re.compile(
    r"(?:^|/)(?P<split>[^/]+)/(?P<label>pos|neg)/(?P<id>\d+)_(?P<rating>\d+)\.txt$"
)
LABEL_FOLDERS = ("neg", "pos")
COLUMNS = ["review_id", "rating", "label", "text", "file"]


class AclImdbDataset(AbstractDataset[None, dict[str, pd.DataFrame]]):
    """Reads the ``aclImdb`` folder or its ``aclImdb_v1.tar.gz`` into one table per split.

    The layout is ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` (Maas et al.,
    2011). The unlabelled ``train/unsup`` reviews are skipped. Each split loads as a
    ``DataFrame`` with columns ``review_id`` (int), ``rating`` (int, 1-10), ``label``
    (``neg``/``pos``, the folder), ``text`` (the file, UTF-8) and ``file`` (its path
    inside ``aclImdb``, so errors can name it), ordered by label then id. The tarball is
    streamed, never unpacked to disk. Load-only.

    Example catalog entry::

        raw_reviews:
          type: llm_finetuning.datasets.AclImdbDataset
          path: data/01_raw/aclImdb_v1.tar.gz   # or data/01_raw/aclImdb
    """

    def __init__(
        self,
        *,
        path: str,
        splits: list[str] | tuple[str, ...] = ("train", "test"),
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            path: The ``aclImdb`` folder, a folder holding it, or the ``.tar.gz``.
            splits: Split folders to read.
            metadata: Ignored by Kedro; for plugins and users.
        """
        self._path = Path(path)
        self._splits = tuple(splits)
        self.metadata = metadata

    def load(self) -> dict[str, pd.DataFrame]:
        if self._path.is_dir():
            rows = self._read_folder(self._dataset_root(self._path))
        elif self._path.is_file():
            rows = self._read_tarball(self._path)
        else:
            raise DatasetError(f"No aclImdb folder or tarball at '{self._path}'")
        tables = {}
        for split in self._splits:
            split_rows = [row for row in rows if row["split"] == split]
            if not split_rows:
                raise DatasetError(
                    f"'{self._path}' has no reviews under {split}/pos or {split}/neg"
                )
            table = pd.DataFrame(split_rows).sort_values(["label", "review_id"])
            tables[split] = table[COLUMNS].reset_index(drop=True)
        return tables

    def save(self, data: dict[str, pd.DataFrame]) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only")

    def _exists(self) -> bool:
        return self._path.exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "splits": list(self._splits)}

    @staticmethod
    def _dataset_root(folder: Path) -> Path:
        """Accept the ``aclImdb`` folder itself or the folder it was unpacked into."""
        nested = folder / "aclImdb"
        return nested if nested.is_dir() and not (folder / "train").is_dir() else folder

    def _read_folder(self, root: Path) -> list[dict[str, Any]]:
        rows = []
        for split in self._splits:
            for label in LABEL_FOLDERS:
                for file in (root / split / label).glob("*.txt"):
                    relative = file.relative_to(root).as_posix()
                    try:
                        content = file.read_bytes()
                    except OSError as exc:
                        raise DatasetError(
                            f"Cannot read review file '{file}': {exc}"
                        ) from exc
                    row = self._parse(relative, content)
                    if row is not None:
                        rows.append(row)
        return rows

    def _read_tarball(self, tarball: Path) -> list[dict[str, Any]]:
        rows = []
        try:
            # Stream mode reads the archive once, front to back: no random access into
            # the gzip stream, nothing unpacked to disk.
            with tarfile.open(tarball, mode="r|*") as archive:
                for member in archive:
                    if not member.isfile() or _REVIEW_FILE.search(member.name) is None:
                        continue
                    content = archive.extractfile(member)
                    if content is None:  # pragma: no cover - isfile() members have data
                        continue
                    relative = member.name.split("aclImdb/", 1)[-1]
                    row = self._parse(relative, content.read())
                    if row is not None:
                        rows.append(row)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(
                f"Cannot read '{tarball}' as an aclImdb tarball: {exc}"
            ) from exc
        return rows

    def _parse(self, relative: str, content: bytes) -> dict[str, Any] | None:
        match = _REVIEW_FILE.search(relative)
        if match is None or match["split"] not in self._splits:
            return None
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"Review file '{relative}' in '{self._path}' is not valid UTF-8: {exc}"
            ) from exc
        return {
            "split": match["split"],
            "review_id": int(match["id"]),
            "rating": int(match["rating"]),
            "label": match["label"],
            "text": text,
            "file": relative,
        }
