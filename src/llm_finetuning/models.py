"""One place that knows how to find a model and its tokenizer.

``ModelParams`` is the typed form of the ``model`` parameters block shared by the
``data_processing`` pipeline (which tokenizes) and the ``training`` pipeline (which
builds the model), so both always use the same tokenizer.

``build_classifier`` is the model factory: any Hugging Face sequence-classification
architecture from a Hub id, a local folder, a GGUF file or a small config, with the label
map and pad token set. ``LoraParams``/``apply_lora``/``model_for_saving`` add parameter-
efficient fine-tuning through peft.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from llm_finetuning.params import Params
from llm_finetuning.truncation import TruncationStrategy

# torch and transformers load where a model is built, not when the params are: the
# pipelines (and ``kedro registry list``) are built without them.
if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

ModelSource = Literal["hub", "local", "gguf", "config"]

# A tokenizer built from bare vocab/merges files reports this sentinel (1e30) as its
# maximum length, which silently disables truncation and max-length padding.
_UNSET_MAX_LENGTH = 1_000_000


class ModelParams(Params):
    """The ``model`` block (parameters.yml): where the model and tokenizer come from.

    Attributes:
        source: ``hub`` (a Hub id), ``local`` (a model folder), ``gguf`` (a GGUF file
            inside ``name_or_path``) or ``config`` (a small architecture from
            ``architecture``, random weights: tests and the demo).
        name_or_path: Hub id or folder of the model.
        tokenizer_name_or_path: Hub id or folder of the tokenizer; defaults to
            ``name_or_path``. Required for ``source: config``.
        gguf_file: File name of the GGUF weights inside ``name_or_path``.
        architecture: ``model_type`` plus config keyword arguments, for ``config``.
        max_length: Tokens kept per text, special tokens included; longer texts are
            truncated by ``truncation``.
        truncation: Which tokens a long text keeps: ``head`` (the first),
            ``tail`` (the last) or ``head_tail`` (the first ``head_tokens`` and the
            last ``max_length - head_tokens``); see :mod:`llm_finetuning.truncation`.
        head_tokens: Tokens kept from the start of a long text under ``head_tail``.
        revision: Hub revision (branch, tag or commit) to pin.
    """

    key: ClassVar[str] = "model"

    source: ModelSource = "hub"
    name_or_path: str | None = "openai-community/gpt2"
    tokenizer_name_or_path: str | None = None
    gguf_file: str | None = None
    architecture: dict[str, Any] = Field(default_factory=dict)
    max_length: int = Field(512, ge=1)
    truncation: TruncationStrategy = "head"
    head_tokens: int = Field(128, ge=0)
    revision: str | None = None

    @field_validator("architecture", mode="before")
    @classmethod
    def _no_architecture(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _source_needs(self) -> ModelParams:
        if self.source == "config" and not self.tokenizer_name_or_path:
            raise ValueError("source 'config' needs tokenizer_name_or_path")
        if self.source == "gguf" and not self.gguf_file:
            raise ValueError("source 'gguf' needs gguf_file")
        if self.truncation == "head_tail" and self.head_tokens >= self.max_length:
            raise ValueError(
                f"head_tokens ({self.head_tokens}) must be below max_length "
                f"({self.max_length}) to keep a tail"
            )
        return self

    @property
    def tokenizer_location(self) -> str:
        """Hub id or folder the tokenizer is loaded from."""
        location = self.tokenizer_name_or_path or self.name_or_path
        if not location:
            raise ValueError(
                "model.name_or_path or model.tokenizer_name_or_path is required"
            )
        return location


def load_tokenizer(spec: ModelParams) -> PreTrainedTokenizerBase:
    """Load the fast tokenizer for ``spec``, ready for classification batches.

    Decoder models such as GPT-2 and Llama ship without a pad token: it falls back to
    EOS (the model pools the last non-pad token, so the choice does not leak into the
    prediction). The maximum length is set from ``spec`` so truncation always applies.
    """
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"revision": spec.revision} if spec.revision else {}
    if spec.source == "gguf" and not spec.tokenizer_name_or_path:
        kwargs["gguf_file"] = spec.gguf_file
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_location, **kwargs)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"Tokenizer '{spec.tokenizer_location}' has neither a pad nor an EOS token"
            )
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("Tokenizer has no pad token; using EOS %r", tokenizer.eos_token)
    model_limit = tokenizer.model_max_length
    if model_limit < _UNSET_MAX_LENGTH and spec.max_length > model_limit:
        raise ValueError(
            f"model.max_length {spec.max_length} exceeds the {model_limit} tokens "
            f"'{spec.tokenizer_location}' supports"
        )
    tokenizer.model_max_length = spec.max_length
    return tokenizer


# Names sequence-classification heads go by in transformers (GPT-2/Llama: ``score``,
# BERT-likes: ``classifier``, BART-likes: ``classification_head``).
_HEAD_NAMES = ("score", "classifier", "classification_head")


def build_classifier(
    spec: ModelParams,
    tokenizer: PreTrainedTokenizerBase,
    label_names: Sequence[str],
) -> PreTrainedModel:
    """Build the sequence-classification model ``spec`` describes, ready to fine-tune.

    The classification head gets one output per label with ``id2label``/``label2id``
    from ``label_names``, so the saved model names its classes. Decoder models (GPT-2,
    Llama, ...) pool the last non-pad token, so ``pad_token_id`` is set from the
    tokenizer. Weights are loaded in float32: mixed precision is the Trainer's job and
    needs full-precision master weights.

    Args:
        spec: Where the model comes from (see :class:`ModelParams`).
        tokenizer: The tokenizer from :func:`load_tokenizer` for the same ``spec``.
        label_names: Class names; index = label id.

    Raises:
        ValueError: On fewer than two labels, a missing local folder or a tokenizer
            whose vocabulary does not fit the model's embeddings.
    """
    if len(label_names) < 2 or len(set(label_names)) != len(label_names):
        raise ValueError(
            f"label_names must hold at least two distinct names, got {list(label_names)}"
        )
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    if spec.source == "config":
        model = _model_from_architecture(spec, tokenizer, labels)
    else:
        model = _pretrained_model(spec, labels)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    embedding_rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > embedding_rows:
        raise ValueError(
            f"The tokenizer '{spec.tokenizer_location}' has {len(tokenizer)} tokens but "
            f"the model has {embedding_rows} embedding rows: they do not belong together"
        )
    return model


def _model_from_architecture(
    spec: ModelParams, tokenizer: PreTrainedTokenizerBase, labels: dict[str, Any]
) -> PreTrainedModel:
    """A randomly initialised model from ``spec.architecture`` (tests and the demo)."""
    architecture = dict(spec.architecture)
    model_type = architecture.pop("model_type", None)
    if not model_type:
        raise ValueError(
            "model.architecture needs a model_type (gpt2, llama, bert, ...)"
        )
    # Special-token ids default to the original vocabulary's (GPT-2: 50256), which
    # lies outside a small tokenizer's vocabulary: take them from the tokenizer.
    token_ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(model_type, **{**token_ids, **architecture, **labels})
    return AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)


def _pretrained_model(spec: ModelParams, labels: dict[str, Any]) -> PreTrainedModel:
    """Pretrained weights from the Hub, a local folder or a GGUF file."""
    location = spec.name_or_path
    if not location:
        raise ValueError(f"model.source {spec.source!r} needs model.name_or_path")
    if spec.source in ("local", "gguf") and not Path(location).is_dir():
        raise ValueError(f"model.name_or_path '{location}' is not a folder")
    kwargs: dict[str, Any] = {"revision": spec.revision} if spec.revision else {}
    if spec.source == "gguf":
        gguf_path = Path(location) / str(spec.gguf_file)
        if not gguf_path.is_file():
            raise ValueError(f"GGUF file '{gguf_path}' not found")
        kwargs["gguf_file"] = spec.gguf_file
    import torch
    from transformers import AutoModelForSequenceClassification

    # A checkpoint that already has a head for another number of classes gets a new
    # head (transformers logs which weights were re-initialised).
    model = AutoModelForSequenceClassification.from_pretrained(
        location, dtype=torch.float32, ignore_mismatched_sizes=True, **labels, **kwargs
    )
    if spec.source == "gguf":
        model = _plain_copy(model)
    return model


def _plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """Copy a GGUF-loaded model's dequantised weights into a plain model.

    transformers flags a model loaded from GGUF as quantized and ``Trainer`` refuses to
    fine-tune it; the weights themselves are already dequantised to float32.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(model.config)
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    plain = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    return plain


class LoraParams(Params):
    """LoRA settings (the ``training.lora`` parameters block).

    Attributes:
        enabled: Train low-rank adapters instead of all weights.
        r: Adapter rank.
        alpha: Scaling numerator (the update is scaled by ``alpha / r``).
        dropout: Dropout on the adapter input.
        target_modules: Module names to adapt; ``None`` uses peft's defaults for the
            architecture (GPT-2: ``c_attn``; Llama: ``q_proj``, ``v_proj``; BERT:
            ``query``, ``value``).
        modules_to_save: Modules trained in full beside the adapters; ``None`` finds
            the classification head (``score``, ``classifier``, ...), which starts
            random and must learn.
        merge_on_save: Fold the adapters into the weights before saving, so the saved
            folder is a plain model. ``False`` saves the adapter alone; loading it needs
            the base model by name, so it requires ``model.source`` hub or local.
    """

    key: ClassVar[str] = "training.lora"

    enabled: bool = False
    r: int = Field(8, ge=1)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] | None = None
    modules_to_save: tuple[str, ...] | None = None
    merge_on_save: bool = True

    @field_validator("target_modules", "modules_to_save", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


# The old name, still used by tests/pipelines/deployment (owned by the deployment work);
# drop it once they say ModelParams.
ModelSpec = ModelParams


def apply_lora(model: PreTrainedModel, lora: LoraParams) -> PreTrainedModel:
    """Wrap ``model`` with LoRA adapters; only they and the head stay trainable."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers.pytorch_utils import Conv1D

    modules_to_save = lora.modules_to_save or _classification_head(model)
    config = LoraConfig(
        # GPT-2 stores its projections transposed (Conv1D); peft needs telling.
        fan_in_fan_out=any(isinstance(module, Conv1D) for module in model.modules()),
        task_type=TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules) if lora.target_modules else None,
        modules_to_save=list(modules_to_save),
    )
    return get_peft_model(model, config)


def _classification_head(model: PreTrainedModel) -> tuple[str, ...]:
    """Name of the classification head among the model's top-level modules."""
    children = {name for name, _ in model.named_children()}
    heads = tuple(name for name in _HEAD_NAMES if name in children)
    if not heads:
        raise ValueError(
            f"No classification head ({', '.join(_HEAD_NAMES)}) found in "
            f"{type(model).__name__} (modules: {sorted(children)}): set "
            "training.lora.modules_to_save"
        )
    return heads


def model_for_saving(model: PreTrainedModel, lora: LoraParams) -> PreTrainedModel:
    """The model to save: LoRA adapters merged into the weights when asked."""
    from peft import PeftModel

    if isinstance(model, PeftModel) and lora.merge_on_save:
        return model.merge_and_unload()
    return model


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Total, trainable and non-embedding parameter counts (the last two feed the FLOPs).

    An embedding is a table lookup, and its gradient a scatter into the rows used: it
    does no matmul work, so ``trainable_non_embedding`` leaves it out.
    """
    import torch

    embedding_weights = {
        id(module.weight)
        for module in model.modules()
        if isinstance(module, torch.nn.Embedding)
    }
    parameters = list(model.parameters())
    total = sum(p.numel() for p in parameters)
    embeddings = sum(p.numel() for p in parameters if id(p) in embedding_weights)
    trainable = [p for p in parameters if p.requires_grad]
    return {
        "total": total,
        "trainable": sum(p.numel() for p in trainable),
        "non_embedding": total - embeddings,
        "trainable_non_embedding": sum(
            p.numel() for p in trainable if id(p) not in embedding_weights
        ),
    }
