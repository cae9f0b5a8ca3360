"""Hugging Face Arrow datasets saved atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

from llm_finetuning.datasets._atomic import atomic_directory

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict


class AtomicArrowDataset(
    AbstractDataset["Dataset | DatasetDict", "Dataset | DatasetDict"]
):
    """A ``Dataset`` or ``DatasetDict`` saved with ``save_to_disk``, never half-written.

    What ``huggingface.ArrowDataset`` does for a local folder, written beside and
    renamed: ``load_from_disk`` memory-maps the Arrow files, so overwriting them in
    place while a previous run's copy is open can corrupt it. Local paths only (Unity
    Catalog Volumes are mounted as local paths on Databricks). Its own class, not a
    subclass of kedro-datasets' one: importing ``kedro_datasets.huggingface`` imports
    transformers and torch, and the catalog builds every dataset before the first node.

    Example catalog entry::

        tokenized_reviews:
          type: llm_finetuning.datasets.AtomicArrowDataset
          path: data/05_model_input/tokenized_reviews
    """

    def __init__(
        self,
        *,
        path: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._path = Path(path)
        self._load_args = dict(load_args or {})
        self._save_args = dict(save_args or {})
        self.metadata = metadata

    def load(self) -> Dataset | DatasetDict:
        from datasets import load_from_disk

        return load_from_disk(str(self._path), **self._load_args)

    def save(self, data: Dataset | DatasetDict) -> None:
        from datasets import Dataset, DatasetDict

        if not isinstance(data, Dataset | DatasetDict):
            raise DatasetError(
                f"{type(self).__name__} saves a datasets.Dataset or DatasetDict, "
                f"got {type(data).__name__}"
            )
        with atomic_directory(self._path) as scratch:
            data.save_to_disk(str(scratch), **self._save_args)

    def _exists(self) -> bool:
        return any(
            (self._path / marker).is_file()
            for marker in ("dataset_dict.json", "state.json")
        )

    def _describe(self) -> dict[str, Any]:
        return {
            "path": str(self._path),
            "load_args": self._load_args,
            "save_args": self._save_args,
        }
