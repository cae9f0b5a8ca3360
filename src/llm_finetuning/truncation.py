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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, get_args

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

    Args:
        tokenizer: A fast (Rust) Hugging Face tokenizer.
        texts: The texts.
        max_length: Tokens kept per text, special tokens included.
        strategy: ``head``, ``tail`` or ``head_tail``.
        head_tokens: For ``head_tail``: tokens kept from the start.

    Raises:
        ValueError: For an unknown strategy, or a ``max_length`` that leaves no room
            for text after the special tokens.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"model.truncation must be one of {', '.join(STRATEGIES)}; got {strategy!r}"
        )
    prefix, suffix = special_tokens_around(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 1:
        raise ValueError(
            f"model.max_length {max_length} leaves no room for text: the tokenizer "
            f"adds {len(prefix) + len(suffix)} special tokens"
        )
    if strategy == "head":
        return _encode_head(tokenizer, texts, max_length, len(prefix) + len(suffix))
    content = tokenizer(list(texts), add_special_tokens=False, truncation=False)
    input_ids, lengths = [], []
    for ids in content["input_ids"]:
        input_ids.append(
            [*prefix, *keep_tokens(ids, budget, strategy, head_tokens), *suffix]
        )
        lengths.append(len(ids) + len(prefix) + len(suffix))
    return EncodedTexts(input_ids=input_ids, lengths_before=lengths)


def _encode_head(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    specials: int,
) -> EncodedTexts:
    """The tokenizer's own truncation, lengths read from its overflowing pieces."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    # The fast tokenizer keeps what truncation cut off as overflowing pieces, each
    # with its own special tokens: their sizes give the length before truncation
    # without tokenizing twice.
    lengths = [
        len(encoding.ids)
        + sum(len(piece.ids) - specials for piece in encoding.overflowing)
        for encoding in encoded.encodings
    ]
    return EncodedTexts(input_ids=list(encoded["input_ids"]), lengths_before=lengths)


def special_tokens_around(
    tokenizer: PreTrainedTokenizerBase,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The special token ids the tokenizer puts before and after a single text."""
    return _special_tokens_around(tokenizer)


@lru_cache(maxsize=16)
def _special_tokens_around(
    tokenizer: PreTrainedTokenizerBase,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
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
