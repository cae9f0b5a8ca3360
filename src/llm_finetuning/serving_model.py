"""The MLflow pyfunc that serves a fine-tuned text classifier ("models from code").

MLflow copies this file into the logged model and runs it wherever the model is served
(``mlflow models serve``, Databricks Model Serving), so it imports only what the model's
``pip_requirements`` install: mlflow, pandas, torch, transformers - never
``llm_finetuning`` itself. LoRA adapters are merged before packaging, so the artifact is
always a plain model folder.

Input: review texts (``{"inputs": ["text", ...]}`` or a one-column frame). Output: one
row per text in the evaluation pipeline's ``test_predictions`` shape: ``predicted_label``
(the label id), ``label_name`` and ``prob_<label name>`` per class, so served answers are
scored by the same metrics as offline ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def texts_from_model_input(model_input: Any) -> list[str]:
    """Review texts from what the scoring server or ``predict`` hands over.

    Raises a ``ValueError`` (the scoring server answers 400) for anything but strings.
    """
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] != 1:
            raise ValueError(
                f"Expected one text column, got columns {list(model_input.columns)}"
            )
        values = model_input.iloc[:, 0].tolist()
    elif isinstance(model_input, pd.Series):
        values = model_input.tolist()
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        values = list(model_input)
    bad = [i for i, value in enumerate(values) if not isinstance(value, str)]
    if bad:
        raise ValueError(f"Inputs must be strings; rows {bad[:10]} are not")
    return values


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    """Batched, length-sorted, dynamically padded inference with probabilities."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        folder = Path(context.artifacts["model"])
        config = context.model_config or {}
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token is None:
            # Decoder models (GPT-2, Llama) ship without one; the head pools the last
            # non-pad token, so EOS as pad does not change the prediction.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length = int(
            config.get("max_length") or self.tokenizer.model_max_length
        )
        self.batch_size = int(config.get("batch_size", 16))
        id2label = self.model.config.id2label
        self.label_names = [str(id2label[i]) for i in range(len(id2label))]

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: Any,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        texts = texts_from_model_input(model_input)
        probabilities = torch.zeros((len(texts), len(self.label_names)))
        # Sorting by length keeps each batch's padding small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in rows],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                logits = self.model(**batch).logits.float()
                probabilities[rows] = torch.softmax(logits, dim=-1)
        predicted = probabilities.argmax(dim=-1).tolist()
        frame = pd.DataFrame(
            {
                "predicted_label": pd.Series(predicted, dtype="int64"),
                "label_name": [self.label_names[i] for i in predicted],
            }
        )
        for index, name in enumerate(self.label_names):
            frame[f"prob_{name}"] = probabilities[:, index].double().numpy()
        return frame


mlflow.models.set_model(TextClassifierModel())
