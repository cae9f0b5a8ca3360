"""The faster CPU path: the classifier exported for ONNX Runtime, weights in int8.

:func:`onnx_model_file` exports a transformers sequence classifier once with torch's
exporter (``torch.onnx.export(dynamo=True)``: batch and sequence length stay dynamic,
and GPT-2's last-non-pad-token pooling is captured as graph ops, not traced as
constants), fuses LayerNorm and GELU with ONNX Runtime's transformer optimizer
(BERT and GPT-2) and quantizes its weights with ONNX Runtime's ``quantize_dynamic`` (QInt8
weights, activations quantized on the fly). That covers GPT-2's ``Conv1D`` layers,
which torch's own ``quantize_dynamic`` skips (it handles ``nn.Linear`` only), and
BERT-style encoders alike. Both files are cached in ``<cache_dir>/<fingerprint>/``,
the fingerprint hashing the weights and config, written atomically: the first run
builds them, later runs (and other processes) reuse them.

:class:`OnnxClassifier` runs the file with the same contract as the evaluation
pipeline's :func:`~llm_finetuning.pipelines.evaluation.inference.predict_probabilities`
(unpadded features in, class probabilities in the rows' order out; longest first,
right-padded per batch), so the scoring engine, a benchmark or an MLflow pyfunc model
can swap it in for the torch model::

    runtime = OnnxClassifier.from_classifier(classifier, "data/06_models/onnx_cache")
    probabilities = runtime.predict_texts(["a lovely film"], max_length=512)
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llm_finetuning.truncation import TruncationStrategy, encode_texts

logger = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx", "onnx_int8")
# Bump when the export or quantization recipe changes: older cache entries are ignored.
EXPORT_FORMAT = 1
FP32_FILE, INT8_FILE, FACTS_FILE = "model.onnx", "model.int8.onnx", "export.json"
_INPUTS = ("input_ids", "attention_mask")


def onnxruntime_available() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(name) is not None
        for name in ("onnxruntime", "onnx", "onnxscript")
    )


def model_fingerprint(model: Any) -> str:
    """A hash of the model's config and every weight (names, dtypes, bytes)."""
    import torch

    digest = hashlib.sha256()
    digest.update(f"format={EXPORT_FORMAT}".encode())
    digest.update(
        json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode()
    )
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _plain_model(model: Any) -> Any:
    """A peft model with its adapter merged (a copy); any other model as it is."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return model


def export_onnx(model: Any, path: Path, pad_token_id: int) -> None:
    """``model`` (logits from ``input_ids`` and ``attention_mask``) as an ONNX file."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    model = _plain_model(model).eval()
    config = model.config
    positions = getattr(config, "n_positions", None) or getattr(
        config, "max_position_embeddings", None
    )
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=positions)
    input_ids = torch.full((2, 16), 1, dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, 8:], attention_mask[1, 8:] = pad_token_id, 0  # a right-padded row
    chatty = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]
    levels = [log.level for log in chatty]
    for log in chatty:  # one INFO line per deduplicated initializer otherwise
        log.setLevel(logging.WARNING)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LogitsOnly(model),
            (input_ids, attention_mask),
            str(path),
            input_names=list(_INPUTS),
            output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in _INPUTS},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    for log, level in zip(chatty, levels, strict=True):
        log.setLevel(level)


def fuse_operators(path: Path, config: Any) -> dict[str, int]:
    """Fuse LayerNorm, GELU (and what else matches) with ONNX Runtime's transformer
    optimizer, in place; the fused operators by kind (nothing for unknown models).

    Fused before quantizing: int8 MatMuls break the patterns ONNX Runtime would
    otherwise fuse when the session starts (about 1.5x on MiniLM int8).
    """
    model_type = {"bert": "bert", "gpt2": "gpt2"}.get(config.model_type)
    if model_type is None:
        return {}
    from onnxruntime.transformers.optimizer import optimize_model

    heads = getattr(config, "num_attention_heads", None) or config.n_head
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    try:
        optimized = optimize_model(
            str(path),
            model_type=model_type,
            num_heads=heads,
            hidden_size=hidden,
            opt_level=1,
        )
    except Exception as error:  # an unfused model still runs, only slower
        logger.warning("ONNX operator fusion skipped: %s", error)
        return {}
    optimized.save_model_to_file(str(path))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic quantization: int8 weights of every MatMul/Gemm, activations at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" is logged on the root
    try:
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    finally:
        root.setLevel(level)


def onnx_model_file(
    model: Any, cache_dir: str | os.PathLike, *, quantized: bool, pad_token_id: int
) -> Path:
    """The cached ONNX file of ``model`` (int8 or fp32), exported on first use.

    ``<cache_dir>/<fingerprint>/`` holds both files and ``export.json``; it is built in
    a scratch folder and renamed into place, so a killed export leaves nothing a
    later run would read, and of two processes exporting at once the first rename wins.
    """
    import onnxruntime
    import torch

    fingerprint = model_fingerprint(model)
    folder = Path(cache_dir) / fingerprint
    wanted = folder / (INT8_FILE if quantized else FP32_FILE)
    if wanted.is_file():
        logger.info("ONNX model %s reused from the cache", wanted)
        return wanted
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = folder.with_name(f".{fingerprint}.tmp-{uuid.uuid4().hex[:8]}")
    scratch.mkdir()
    try:
        started = time.perf_counter()
        export_onnx(model, scratch / FP32_FILE, pad_token_id)
        fused = fuse_operators(scratch / FP32_FILE, model.config)
        exported = time.perf_counter()
        quantize_int8(scratch / FP32_FILE, scratch / INT8_FILE)
        facts = {
            "fingerprint": fingerprint,
            "format": EXPORT_FORMAT,
            "model_type": model.config.model_type,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "fused_operators": fused,
            "quantization": "dynamic, QInt8 weights per channel",
            "export_seconds": round(exported - started, 2),
            "quantize_seconds": round(time.perf_counter() - exported, 2),
        }
        (scratch / FACTS_FILE).write_text(json.dumps(facts, indent=2))
        if folder.exists():  # an incomplete entry (or one built meanwhile): replace
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(scratch, folder)
        except OSError:
            if not wanted.is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info(
        "Exported the model to ONNX in %.1f s (+%.1f s int8) into %s",
        facts["export_seconds"],
        facts["quantize_seconds"],
        folder,
    )
    return wanted


class OnnxClassifier:
    """An ONNX Runtime session over an exported classifier, scoring like the torch path.

    Args:
        path: An ONNX file taking ``input_ids`` and ``attention_mask`` (int64,
            ``(batch, sequence)``) and returning ``logits`` ``(batch, num_labels)``.
        tokenizer: The model's tokenizer (pad token, and :meth:`predict_texts`).
        num_threads: ONNX Runtime intra-op threads; ``None``: its default (the cores).
    """

    def __init__(
        self, path: str | os.PathLike, tokenizer: Any, *, num_threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        if tokenizer.pad_token_id is None:
            raise ValueError(
                "the tokenizer has no pad token: set tokenizer.pad_token "
                "(GPT-2: the EOS token)"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.session = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    @classmethod
    def from_classifier(
        cls,
        classifier: Any,
        cache_dir: str | os.PathLike,
        *,
        quantized: bool = True,
        num_threads: int | None = None,
    ) -> OnnxClassifier:
        """The cached (or newly exported) ONNX form of a ``TextClassifier``."""
        tokenizer = classifier.tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        pad_id = classifier.model.config.pad_token_id
        path = onnx_model_file(
            classifier.model,
            cache_dir,
            quantized=quantized,
            pad_token_id=tokenizer.pad_token_id if pad_id is None else pad_id,
        )
        return cls(path, tokenizer, num_threads=num_threads)

    def predict_probabilities(
        self, features: Any, *, batch_size: int = 32
    ) -> np.ndarray:
        """Class probabilities for every row of ``features``, in the rows' order.

        ``features``: a ``datasets.Dataset`` or a mapping with unpadded ``input_ids``
        (and ``attention_mask``; a ``length`` column gives the sort key). Rows run
        longest first in batches right-padded to their longest row, as the torch path.
        Returns ``float32`` ``(rows, num_labels)``; rows sum to 1.
        """
        rows: Sequence[Sequence[int]] = features["input_ids"]
        if len(rows) == 0:
            raise ValueError("no rows to predict")
        lengths = (
            np.asarray(features["length"])
            if _has(features, "length")
            else np.fromiter(
                (len(ids) for ids in rows), dtype=np.int64, count=len(rows)
            )
        )
        masks = features["attention_mask"] if _has(features, "attention_mask") else None
        order = np.argsort(-lengths, kind="stable")
        pad_id = self.tokenizer.pad_token_id
        batches = []
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            width = int(lengths[picked].max())
            input_ids = np.full((len(picked), width), pad_id, dtype=np.int64)
            attention_mask = np.zeros((len(picked), width), dtype=np.int64)
            for row, index in enumerate(picked.tolist()):
                n = int(lengths[index])
                input_ids[row, :n] = rows[index]
                attention_mask[row, :n] = masks[index] if masks is not None else 1
            (logits,) = self.session.run(
                ["logits"], {"input_ids": input_ids, "attention_mask": attention_mask}
            )
            batches.append(_softmax(logits))
        probabilities = np.empty((len(order), batches[0].shape[1]), dtype=np.float32)
        probabilities[order] = np.concatenate(batches)
        return probabilities

    def predict_texts(
        self,
        texts: Sequence[str],
        *,
        max_length: int,
        truncation: TruncationStrategy = "head",
        head_tokens: int = 128,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Probabilities for raw texts, cut like training (``model.max_length``,
        ``model.truncation``, ``model.head_tokens``: :mod:`llm_finetuning.truncation`)."""
        encoded = encode_texts(
            self.tokenizer, texts, max_length, truncation, head_tokens
        )
        return self.predict_probabilities(
            {"input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask},
            batch_size=batch_size,
        )


def _has(features: Any, column: str) -> bool:
    if isinstance(features, Mapping):
        return column in features
    return column in getattr(features, "column_names", ())


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
