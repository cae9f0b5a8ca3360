"""A fine-tuned transformers classifier stored as a self-describing model folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

from llm_finetuning.datasets._atomic import atomic_directory
from llm_finetuning.lineage import METADATA_KEY, weights_fingerprint

if TYPE_CHECKING:  # transformers loads in load(), not when the pipelines are built
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

METADATA_FILE = "llm_finetuning.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"


@dataclass
class TextClassifier:
    """A sequence-classification model with its tokenizer and the facts that explain it.

    ``metadata`` holds JSON-serialisable facts saved beside the weights (label names,
    training arguments, data fingerprint), so a model folder explains itself. Its
    ``lineage`` key (:mod:`llm_finetuning.lineage`) names the data and the MLflow run
    the model came from, and the fingerprint of its weights.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def label_names(self) -> list[str]:
        """Class names ordered by label id."""
        id2label = self.model.config.id2label
        return [id2label[i] for i in range(len(id2label))]


class TextClassifierDataset(AbstractDataset[TextClassifier, TextClassifier]):
    """Saves a :class:`TextClassifier` as a Hugging Face model folder, atomically.

    The folder holds safetensors weights, ``config.json`` (with ``id2label``), the
    tokenizer files and ``llm_finetuning.json``. A PEFT adapter folder (one with
    ``adapter_config.json``) loads back with its base model through peft.

    Saving records the fingerprint of the written weight files in the metadata's
    ``lineage.model_fingerprint`` (in the folder and in the saved object, so both say
    the same); loading a folder saved without it computes it from the files.

    Example catalog entry::

        fine_tuned_model:
          type: llm_finetuning.datasets.TextClassifierDataset
          path: data/06_models/fine_tuned_model
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

    def load(self) -> TextClassifier:
        if (
            not (self._path / "config.json").is_file()
            and not (self._path / ADAPTER_CONFIG_FILE).is_file()
        ):
            raise DatasetError(
                f"No model folder at '{self._path}': config.json is missing"
            )
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if (self._path / ADAPTER_CONFIG_FILE).is_file():
            from peft import AutoPeftModelForSequenceClassification

            model = AutoPeftModelForSequenceClassification.from_pretrained(
                self._path, **self._load_args
            )
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                self._path, **self._load_args
            )
        tokenizer = AutoTokenizer.from_pretrained(self._path)
        metadata_path = self._path / METADATA_FILE
        metadata = (
            json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
        )
        lineage = metadata.setdefault(METADATA_KEY, {})
        if not lineage.get("model_fingerprint"):  # a folder saved before lineage
            lineage["model_fingerprint"] = weights_fingerprint(self._path)
        model.eval()
        return TextClassifier(model=model, tokenizer=tokenizer, metadata=metadata)

    def save(self, data: TextClassifier) -> None:
        with atomic_directory(self._path) as scratch:
            data.model.save_pretrained(scratch, safe_serialization=True)
            data.tokenizer.save_pretrained(scratch)
            # The weights are written: their fingerprint goes into the metadata.
            data.metadata[METADATA_KEY] = {
                **data.metadata.get(METADATA_KEY, {}),
                "model_fingerprint": weights_fingerprint(scratch),
            }
            (scratch / METADATA_FILE).write_text(
                json.dumps(data.metadata, indent=2, sort_keys=True, default=str)
            )

    def _exists(self) -> bool:
        return (self._path / "config.json").is_file() or (
            self._path / ADAPTER_CONFIG_FILE
        ).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "load_args": self._load_args}
