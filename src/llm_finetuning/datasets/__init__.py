"""Custom Kedro datasets: only what kedro-datasets and kedro-mlflow do not provide."""

from llm_finetuning.datasets.acl_imdb import AclImdbDataset
from llm_finetuning.datasets.arrow import AtomicArrowDataset
from llm_finetuning.datasets.model_folder import TextClassifier, TextClassifierDataset
from llm_finetuning.datasets.scored_table import (
    AtomicParquetDataset,
    ChunkStore,
    ChunkStoreDataset,
)
from llm_finetuning.datasets.text_source import TextSource, TextSourceDataset

__all__ = [
    "AclImdbDataset",
    "AtomicArrowDataset",
    "AtomicParquetDataset",
    "ChunkStore",
    "ChunkStoreDataset",
    "TextClassifier",
    "TextClassifierDataset",
    "TextSource",
    "TextSourceDataset",
]
