"""The MLflow pyfunc that serves a fine-tuned text classifier ("models from code").

MLflow copies this file into the logged model and runs it wherever the model is served
(``mlflow models serve``, Databricks Model Serving), so it imports only what the model's
``pip_requirements`` install: mlflow, pandas, torch, transformers - never
``llm_finetuning`` itself. The one exception travels with the model: a copy of
:mod:`llm_finetuning.truncation` (``code_paths``), so long reviews are cut exactly as in
training, evaluation and scoring (``max_length``, ``truncation``, ``head_tokens`` in the
model config). LoRA adapters are merged before packaging, so the artifact is always a
plain model folder.

Input: review texts (``{"inputs": ["text", ...]}`` or a one-column frame). Output: one
row per text in the evaluation pipeline's ``test_predictions`` shape: ``predicted_label``
(the label id), ``label_name`` and ``prob_<label name>`` per class, so served answers are
scored by the same metrics as offline ones. Null or non-string inputs are refused with
HTTP 400, more than ``max_request_bytes`` (model config) of review text with HTTP 413.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, REQUEST_LIMIT_EXCEEDED
from transformers import AutoModelForSequenceClassification, AutoTokenizer

try:
    # The copy of llm_finetuning/truncation.py logged with the model: MLflow puts the
    # model's code/ folder on sys.path before it runs this file.
    from llm_finetuning_truncation import Truncation
except ModuleNotFoundError:  # imported from the project itself (tests, logging)
    from llm_finetuning.truncation import Truncation

# The module name the copy is logged under (mlflow_serving.py): unique, so it shadows
# nothing where the model is served, not even an installed llm_finetuning.
TRUNCATION_MODULE = "llm_finetuning_truncation"

# Used where the model config has no limit (models logged before it had one).
DEFAULT_MAX_REQUEST_BYTES = 262_144


class InvalidReviews(MlflowException, ValueError):
    """Inputs that are not review texts: the scoring server answers HTTP 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class RequestTooLarge(MlflowException, ValueError):
    """More review text in one request than allowed: the scoring server answers 413.

    MLflow's error codes map to no 413 (REQUEST_LIMIT_EXCEEDED means 429), and the
    scoring server answers ``get_http_status_code()`` of the exception, so it is
    overridden here.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=REQUEST_LIMIT_EXCEEDED)

    def get_http_status_code(self) -> int:
        return 413


def _describe(value: Any) -> str:
    """``null`` for None and NaN (pandas' null), else the type name."""
    if (
        value is None
        or value is pd.NA
        or (isinstance(value, float) and math.isnan(value))
    ):
        return "null"
    return type(value).__name__


def texts_from_model_input(model_input: Any) -> list[str]:
    """Review texts from what the scoring server or ``predict`` hands over.

    Raises :class:`InvalidReviews` (a ``ValueError``; the scoring server answers 400)
    for anything but strings: null, numbers, lists. The signature's column type is
    "any" so that the scoring server hands nulls and numbers over as they came; with a
    "string" column it turns ``{"inputs": [null]}`` into the text ``"None"`` first.

    For an "any" column, MLflow's schema enforcement turns ``{"inputs": [<strings>]}``
    into one row holding the list (its convention for a list of strings); any other
    list arrives one value per row. A single row holding a list is therefore read as
    the list of texts.
    """
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] != 1:
            raise InvalidReviews(
                f"Expected one text column, got columns {list(model_input.columns)}"
            )
        values = model_input.iloc[:, 0].tolist()
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = list(values[0])
    elif isinstance(model_input, dict):
        if len(model_input) != 1:
            raise InvalidReviews(
                f"Expected one text column, got columns {list(model_input)}"
            )
        values = list(next(iter(model_input.values())))
    elif isinstance(model_input, pd.Series):
        values = model_input.tolist()
    elif isinstance(model_input, str):
        values = [model_input]
    elif hasattr(model_input, "tolist"):  # numpy arrays
        values = list(model_input.tolist())
    else:
        values = list(model_input)
    bad = [i for i, value in enumerate(values) if not isinstance(value, str)]
    if bad:
        kinds = sorted({_describe(values[i]) for i in bad})
        raise InvalidReviews(
            f"Inputs must be review texts (strings); rows {bad[:10]} are not "
            f"({', '.join(kinds)})"
        )
    return values


def check_request_size(texts: list[str], max_bytes: int | None) -> None:
    """Refuse (HTTP 413) more than ``max_bytes`` of UTF-8 review text in one request.

    The scoring server has already read and parsed the body; this bounds what reaches
    the tokenizer and the model. ``None`` or 0: no limit.
    """
    if not max_bytes:
        return
    size = sum(len(text.encode("utf-8")) for text in texts)
    if size > max_bytes:
        raise RequestTooLarge(
            f"The request holds {size} bytes of review text, more than the "
            f"{max_bytes} allowed (max_request_bytes): send fewer or shorter reviews"
        )


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    """Batched, length-sorted, dynamically padded inference with probabilities."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        folder = Path(context.artifacts["model"])
        config = context.model_config or {}
        self.session = None
        if "onnx" in context.artifacts:
            # The int8 export (deployment.mlflow.runtime: onnx_int8): ONNX Runtime
            # scores; the torch weights are only read for the label names.
            import onnxruntime

            self.session = onnxruntime.InferenceSession(
                context.artifacts["onnx"], providers=["CPUExecutionProvider"]
            )
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token is None:
            # Decoder models (GPT-2, Llama) ship without one; the head pools the last
            # non-pad token, so EOS as pad does not change the prediction.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # A model logged before truncation was configurable has only max_length:
        # it cut the head, and still does.
        self.truncation = Truncation.from_config(
            config, default_max_length=self.tokenizer.model_max_length
        )
        self.batch_size = int(config.get("batch_size", 16))
        self.max_request_bytes = config.get(
            "max_request_bytes", DEFAULT_MAX_REQUEST_BYTES
        )
        id2label = self.model.config.id2label
        self.label_names = [str(id2label[i]) for i in range(len(id2label))]

    def _logits(self, batch: Any) -> torch.Tensor:
        if self.session is None:
            return self.model(**batch).logits.float()
        (logits,) = self.session.run(
            ["logits"],
            {
                "input_ids": batch["input_ids"].numpy().astype("int64"),
                "attention_mask": batch["attention_mask"].numpy().astype("int64"),
            },
        )
        return torch.from_numpy(logits).float()

    # ``model_input: pd.DataFrame``: what the scoring server hands over (the
    # signature's one ``text`` column). MLflow accepts this hint without inferring a
    # signature from it (the explicit one applies) or converting direct calls, which
    # may still pass a list, dict, Series or string. ``Any`` here made MLflow warn
    # that the hint is unsupported and that signature inference failed.
    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        texts = texts_from_model_input(model_input)
        check_request_size(texts, self.max_request_bytes)
        probabilities = torch.zeros((len(texts), len(self.label_names)))
        # Sorting by length keeps each batch's padding small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                encoded = self.truncation.encode(
                    self.tokenizer, [texts[i] for i in rows]
                )
                batch = self.tokenizer.pad(
                    {
                        "input_ids": encoded.input_ids,
                        "attention_mask": encoded.attention_mask,
                    },
                    return_tensors="pt",
                )
                probabilities[rows] = torch.softmax(self._logits(batch), dim=-1)
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
