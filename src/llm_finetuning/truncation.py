"""Which tokens of a long text are kept: one function for every place that tokenizes.

Tokenization for training and evaluation, the served MLflow model, the scoring engines
and the ONNX runtime all call :func:`encode_texts`, so a review is cut the same way
wherever it is scored.

Strategies (``model.truncation``):

- ``head``: the first ``max_length`` tokens (the tokenizer's own truncation).
- ``tail``: the last ``max_length`` tokens (a review's verdict is often at its end).
- ``head_tail``: the first ``model.head_tokens`` and the last
  ``max_length - head_tokens`` tokens; Sun et al. (2019, "How to Fine-Tune BERT for
  Text Classification?") found head 128 + tail 382 best on IMDB.

Special tokens ([CLS] ... [SEP], a BOS) are kept around the cut text and count
towards ``max_length``, as with the tokenizer's own truncation.

The served MLflow model carries a copy of this file (``serving_model.py`` may not
import ``llm_finetuning``): it must import nothing beyond the standard library at run
time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TruncationStrategy = Literal["head", "tail", "head_tail"]
STRATEGIES: tuple[str, ...] = get_args(TruncationStrategy)


@dataclass(frozen=True)
class EncodedTexts:
    """Token ids per text (unpadded), and each text's length before truncation.

    ``lengths_before`` counts the text's tokens plus the special tokens, so it equals
    ``len(input_ids[i])`` for a text that was not cut.
    """

    input_ids: list[list[int]]
    lengths_before: list[int]

    @property
    def attention_mask(self) -> list[list[int]]:
        return [[1] * len(ids) for ids in self.input_ids]

    @property
    def truncated(self) -> int:
        """How many texts lost tokens."""
        return sum(
            before > len(ids)
            for before, ids in zip(self.lengths_before, self.input_ids, strict=True)
        )


def keep_tokens(
    ids: Sequence[int], budget: int, strategy: TruncationStrategy, head_tokens: int
) -> list[int]:
    """The ``budget`` tokens of ``ids`` that ``strategy`` keeps (all when they fit)."""
    if len(ids) <= budget:
        return list(ids)
    if strategy == "head":
        return list(ids[:budget])
    if strategy == "tail":
        return list(ids[len(ids) - budget :]) if budget else []
    head = min(head_tokens, budget)
    tail = budget - head
    return list(ids[:head]) + (list(ids[len(ids) - tail :]) if tail else [])


def encode_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    strategy: TruncationStrategy = "head",
    head_tokens: int = 128,
) -> EncodedTexts:
    """Token ids of ``texts``, each cut to ``max_length`` tokens by ``strategy``.

    Every strategy takes the same path: the text's tokens without special tokens, the
    kept ones picked by :func:`keep_tokens`, the special tokens put back around them.
    For ``head`` that equals the tokenizer's own right-side truncation (tested), but it
    stays ``head`` even for a tokenizer saved with ``truncation_side="left"``, and it
    works for slow tokenizers too; it was no slower than the tokenizer's truncation on
    IMDB reviews (which tokenizes the whole text anyway).

    Args:
        tokenizer: A Hugging Face tokenizer.
        texts: The texts.
        max_length: Tokens kept per text, special tokens included.
        strategy: ``head``, ``tail`` or ``head_tail``.
        head_tokens: For ``head_tail``: tokens kept from the start.

    Raises:
        ValueError: For an unknown strategy, a ``max_length`` that leaves no room for
            text after the special tokens, or (``head_tail``) ``head_tokens`` that
            leave no room for a tail.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"model.truncation must be one of {', '.join(STRATEGIES)}; got {strategy!r}"
        )
    prefix, suffix = special_tokens_around(tokenizer)
    specials = len(prefix) + len(suffix)
    budget = max_length - specials
    if budget < 1:
        raise ValueError(
            f"model.max_length {max_length} leaves no room for text: the tokenizer "
            f"adds {specials} special tokens"
        )
    if strategy == "head_tail" and not 0 <= head_tokens < budget:
        raise ValueError(
            f"model.head_tokens {head_tokens} must be at least 0 and below "
            f"{budget} (model.max_length {max_length} less {specials} special "
            "tokens) for head_tail to keep a tail"
        )
    # verbose=False: untruncated ids longer than model_max_length are expected here
    # (they are cut below); the tokenizer would warn of "indexing errors" otherwise.
    content = tokenizer(
        list(texts), add_special_tokens=False, truncation=False, verbose=False
    )
    input_ids, lengths = [], []
    for ids in content["input_ids"]:
        input_ids.append(
            [*prefix, *keep_tokens(ids, budget, strategy, head_tokens), *suffix]
        )
        lengths.append(len(ids) + specials)
    return EncodedTexts(input_ids=input_ids, lengths_before=lengths)


@dataclass(frozen=True)
class Truncation:
    """The three ``model`` parameters that decide how texts are cut, as one value.

    Engines pass it to their workers (it pickles) and the served model stores it in its
    MLflow model config (:meth:`as_config`, :meth:`from_config`).
    """

    max_length: int
    strategy: TruncationStrategy = "head"
    head_tokens: int = 128

    def encode(
        self, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]
    ) -> EncodedTexts:
        """:func:`encode_texts` with these settings."""
        return encode_texts(
            tokenizer, texts, self.max_length, self.strategy, self.head_tokens
        )

    def as_config(self) -> dict[str, Any]:
        """``max_length``, ``truncation`` and ``head_tokens``: the ``model`` keys."""
        return {
            "max_length": self.max_length,
            "truncation": self.strategy,
            "head_tokens": self.head_tokens,
        }

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], default_max_length: int
    ) -> Truncation:
        """Read :meth:`as_config`'s keys; a config without them means ``head``."""
        return cls(
            max_length=int(config.get("max_length") or default_max_length),
            strategy=config.get("truncation") or "head",
            head_tokens=int(config.get("head_tokens", 128)),
        )


def special_tokens_around(
    tokenizer: PreTrainedTokenizerBase,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The special token ids the tokenizer puts before and after a single text.

    Found by encoding a probe word with and without them: two tiny calls, cheaper
    than a cache that would keep every tokenizer alive or miss a later change to it.
    """
    probe = "movie"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return tuple(full[:start]), tuple(full[start + len(bare) :])
    raise ValueError(
        f"Cannot tell which special tokens {type(tokenizer).__name__} adds: "
        f"{probe!r} encodes to {full} with them and {bare} without"
    )
