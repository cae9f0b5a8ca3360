"""Custom Kedro datasets: only what kedro-datasets and kedro-mlflow do not provide.

The exports load on first use (a module ``__getattr__``), so importing the package, or
one light module of it, does not import transformers, datasets or pyarrow: building
the pipelines stays fast. ``from llm_finetuning.datasets import X`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_finetuning.datasets.acl_imdb import AclImdbDataset
    from llm_finetuning.datasets.arrow import AtomicArrowDataset
    from llm_finetuning.datasets.model_folder import (
        TextClassifier,
        TextClassifierDataset,
    )
    from llm_finetuning.datasets.optional import OptionalDataset
    from llm_finetuning.datasets.scored_table import (
        AtomicParquetDataset,
        ChunkStore,
        ChunkStoreDataset,
    )
    from llm_finetuning.datasets.text_source import TextSource, TextSourceDataset

_EXPORTS = {
    "AclImdbDataset": "acl_imdb",
    "AtomicArrowDataset": "arrow",
    "AtomicParquetDataset": "scored_table",
    "ChunkStore": "scored_table",
    "ChunkStoreDataset": "scored_table",
    "OptionalDataset": "optional",
    "TextClassifier": "model_folder",
    "TextClassifierDataset": "model_folder",
    "TextSource": "text_source",
    "TextSourceDataset": "text_source",
}

__all__ = [
    "AclImdbDataset",
    "AtomicArrowDataset",
    "AtomicParquetDataset",
    "ChunkStore",
    "ChunkStoreDataset",
    "OptionalDataset",
    "TextClassifier",
    "TextClassifierDataset",
    "TextSource",
    "TextSourceDataset",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
