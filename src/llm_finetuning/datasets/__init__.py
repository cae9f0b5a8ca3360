"""Custom Kedro datasets: only what kedro-datasets and kedro-mlflow do not provide."""

from llm_finetuning.datasets.acl_imdb import AclImdbDataset
from llm_finetuning.datasets.arrow import AtomicArrowDataset
from llm_finetuning.datasets.model_folder import TextClassifier, TextClassifierDataset

__all__ = [
    "AclImdbDataset",
    "AtomicArrowDataset",
    "TextClassifier",
    "TextClassifierDataset",
]
