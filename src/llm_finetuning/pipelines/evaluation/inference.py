"""Batched class-probability inference for sequence-classification models.

The reference lab scored ``trainer.predict(...).predictions.argmax(-1)``: with a causal
LM head that is an argmax over the *vocabulary*, compared with class ids. Here the model
must return one logit per class (``(batch, num_labels)``), which a softmax turns into
class probabilities; anything else is rejected with an explanation.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

logger = logging.getLogger(__name__)

_DEFAULT_LABEL_NAME = re.compile(r"LABEL_\d+")
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def best_device(requested: str = "auto") -> torch.device:
    """``auto``: the first of CUDA, Apple MPS and CPU that is available; else ``requested``."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_classifier(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    label_names: Sequence[str],
) -> None:
    """Raise ``ValueError`` unless ``model`` is a single-label classifier over ``label_names``.

    Catches what would silently produce wrong scores: a head with a different number of
    outputs, a label map that disagrees with ``label_names`` (swapped classes), a
    multi-label or regression head, and a decoder whose pad token differs from the
    tokenizer's (it would pool the wrong token).
    """
    config = model.config
    n_labels = len(label_names)
    if config.problem_type in ("regression", "multi_label_classification"):
        raise ValueError(
            f"the model's problem_type is {config.problem_type!r}; evaluation scores "
            "single-label classifiers (softmax over the classes)"
        )
    if config.num_labels != n_labels:
        raise ValueError(
            f"the model has {config.num_labels} output(s) but label_names has "
            f"{n_labels} classes {list(label_names)}: is it a sequence-classification "
            "model trained on these labels?"
        )
    model_names = [str(config.id2label[i]) for i in range(config.num_labels)]
    generic = all(_DEFAULT_LABEL_NAME.fullmatch(name) for name in model_names)
    if not generic and model_names != [str(name) for name in label_names]:
        raise ValueError(
            f"the model's id2label {model_names} differs from label_names "
            f"{list(label_names)}: class ids would be misread"
        )
    pad_id = getattr(config, "pad_token_id", None)
    if pad_id is not None and tokenizer.pad_token_id not in (None, pad_id):
        raise ValueError(
            f"the model's pad_token_id {pad_id} differs from the tokenizer's "
            f"{tokenizer.pad_token_id}: padded batches would be pooled at the wrong token"
        )


def predict_probabilities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    features: Dataset,
    *,
    batch_size: int = 32,
    device: str = "auto",
    pad_to_multiple_of: int | None = None,
) -> np.ndarray:
    """Class probabilities for every row of ``features``, in the rows' order.

    Rows are run longest first (so an out-of-memory error shows up on the first batch,
    not the last) in batches padded on the right only to the longest row of the batch,
    under ``torch.inference_mode()`` on the best available device. The result equals
    running each row alone, unpadded (tested).

    Args:
        model: A sequence-classification model (possibly a peft model) whose logits
            have shape ``(batch, num_labels)``.
        tokenizer: Its tokenizer (pad token and padding side come from it).
        features: Unpadded ``input_ids`` and ``attention_mask`` (other columns are
            ignored); a ``length`` column, when present, gives the sort key.
        batch_size: Rows per forward pass.
        device: ``auto`` or a torch device string.
        pad_to_multiple_of: Round padded lengths up to a multiple of this.

    Returns:
        ``float32`` array of shape ``(len(features), num_labels)``; rows sum to 1.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "the tokenizer has no pad token: set tokenizer.pad_token (GPT-2: the EOS token)"
        )
    if len(features) == 0:
        raise ValueError("no rows to predict")
    if "input_ids" not in features.column_names:
        raise ValueError(
            f"features need an 'input_ids' column; they have {features.column_names}"
        )
    if getattr(model.config, "pad_token_id", None) is None:
        # Decoder classifiers (GPT-2, Llama) refuse batches > 1 without it; the model
        # factory sets it, but a model saved elsewhere may lack it.
        logger.warning(
            "model.config.pad_token_id is unset; using the tokenizer's (%s)",
            tokenizer.pad_token_id,
        )
        model.config.pad_token_id = tokenizer.pad_token_id

    if "length" in features.column_names:
        lengths = np.asarray(features["length"])
    else:
        lengths = np.fromiter(
            (len(ids) for ids in features["input_ids"]), dtype=np.int64
        )
    order = np.argsort(-lengths, kind="stable")
    inputs = features.select_columns(
        [c for c in _MODEL_INPUTS if c in features.column_names]
    )
    loader = DataLoader(
        inputs,
        batch_size=batch_size,
        sampler=order.tolist(),
        collate_fn=DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt"
        ),
    )
    target = best_device(device)
    original_device = next(model.parameters()).device
    was_training = model.training
    original_padding_side = tokenizer.padding_side
    # Right padding, whatever the tokenizer says: models with absolute position
    # embeddings (GPT-2) shift every real token's position under left padding and
    # return different logits. Under right padding real tokens never see the pads.
    tokenizer.padding_side = "right"
    model.to(target)
    model.eval()
    n_labels = model.config.num_labels
    batches: list[np.ndarray] = []
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            for batch in loader:
                logits = model(**{k: v.to(target) for k, v in batch.items()}).logits
                if logits.ndim != 2 or logits.shape[-1] != n_labels:
                    raise ValueError(
                        f"the model returned logits of shape {tuple(logits.shape)}, not "
                        f"(batch, {n_labels}): a language-model head scores the "
                        "vocabulary, not the classes. Evaluate an "
                        "AutoModelForSequenceClassification model"
                    )
                batches.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    finally:
        tokenizer.padding_side = original_padding_side
        model.to(original_device)
        model.train(was_training)
    elapsed = time.perf_counter() - started
    logger.info(
        "Predicted %d reviews on %s in %.1f s (%.1f reviews/s)",
        len(features),
        target,
        elapsed,
        len(features) / elapsed if elapsed else float("inf"),
    )
    probabilities = np.empty((len(features), n_labels), dtype=np.float32)
    probabilities[order] = np.concatenate(batches)
    return probabilities
