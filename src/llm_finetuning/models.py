"""One place that knows how to find a model and its tokenizer.

``ModelSpec`` is the typed form of the ``model`` parameters block shared by the
``data_processing`` pipeline (which tokenizes) and the ``training`` pipeline (which
builds the model), so both always use the same tokenizer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import AutoTokenizer, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

ModelSource = Literal["hub", "local", "gguf", "config"]

# A tokenizer built from bare vocab/merges files reports this sentinel (1e30) as its
# maximum length, which silently disables truncation and max-length padding.
_UNSET_MAX_LENGTH = 1_000_000


@dataclass(frozen=True)
class ModelSpec:
    """Where the model and tokenizer come from.

    Attributes:
        source: ``hub`` (a Hub id), ``local`` (a model folder), ``gguf`` (a GGUF file
            inside ``name_or_path``) or ``config`` (a small architecture from
            ``architecture``, random weights: tests and the demo).
        name_or_path: Hub id or folder of the model.
        tokenizer_name_or_path: Hub id or folder of the tokenizer; defaults to
            ``name_or_path``. Required for ``source: config``.
        gguf_file: File name of the GGUF weights inside ``name_or_path``.
        architecture: ``model_type`` plus config keyword arguments, for ``config``.
        max_length: Tokens kept per text; longer texts are truncated.
        revision: Hub revision (branch, tag or commit) to pin.
    """

    source: ModelSource = "hub"
    name_or_path: str | None = "openai-community/gpt2"
    tokenizer_name_or_path: str | None = None
    gguf_file: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)
    max_length: int = 512
    revision: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ModelSpec:
        """Build from the ``model`` parameters block, rejecting unknown keys."""
        known = set(cls.__dataclass_fields__)
        unknown = set(params) - known
        if unknown:
            raise ValueError(
                f"Unknown key(s) {sorted(unknown)} in the 'model' parameters; "
                f"expected some of {sorted(known)}"
            )
        spec = cls(**{k: v for k, v in params.items() if v is not None})
        if spec.source not in ("hub", "local", "gguf", "config"):
            raise ValueError(
                f"model.source must be hub, local, gguf or config, not {spec.source!r}"
            )
        if spec.source == "config" and not spec.tokenizer_name_or_path:
            raise ValueError("model.source 'config' needs model.tokenizer_name_or_path")
        if spec.source == "gguf" and not spec.gguf_file:
            raise ValueError("model.source 'gguf' needs model.gguf_file")
        if spec.max_length < 1:
            raise ValueError(f"model.max_length must be positive, not {spec.max_length}")
        return spec

    @property
    def tokenizer_location(self) -> str:
        """Hub id or folder the tokenizer is loaded from."""
        location = self.tokenizer_name_or_path or self.name_or_path
        if not location:
            raise ValueError("model.name_or_path or model.tokenizer_name_or_path is required")
        return location


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    """Load the fast tokenizer for ``spec``, ready for classification batches.

    Decoder models such as GPT-2 and Llama ship without a pad token: it falls back to
    EOS (the model pools the last non-pad token, so the choice does not leak into the
    prediction). The maximum length is set from ``spec`` so truncation always applies.
    """
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
