"""Hugging Face Arrow datasets saved atomically."""

from __future__ import annotations

from datasets import Dataset, DatasetDict
from kedro_datasets.huggingface import ArrowDataset

from llm_finetuning.datasets._atomic import atomic_directory


class AtomicArrowDataset(ArrowDataset):
    """``huggingface.ArrowDataset`` that never leaves a half-written folder.

    ``load_from_disk`` memory-maps the Arrow files, so overwriting them in place while a
    previous run's copy is open can corrupt it; writing beside and renaming avoids both.
    Local paths only (Unity Catalog Volumes are mounted as local paths on Databricks).
    """

    def _save_dataset(self, data: Dataset, save_path: str) -> None:
        with atomic_directory(save_path) as scratch:
            data.save_to_disk(str(scratch), **self._save_args)

    def _save_dataset_dict(self, data: DatasetDict, save_path: str) -> None:
        with atomic_directory(save_path) as scratch:
            data.save_to_disk(str(scratch), **self._save_args)
