"""Chat-format JSONL for Azure OpenAI fine-tuning: export, validation before anything
is uploaded (UTF-8, roles, label words, at least 10 examples, tokens per example,
label balance), the trained-token and cost estimate, the job request, and parsing the
deployed model's answers back to class ids.

Tokens are counted with tiktoken's encoding for the base model
(``tiktoken.encoding_for_model``), as OpenAI's cookbook counts chat examples.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from llm_finetuning.pipelines.deployment.azure_openai.settings import (
    AzureOpenAIParams,
    FineTuningParams,
    ValidationParams,
)

logger = logging.getLogger(__name__)

TokenCounter = Callable[[str], int]
INVALID_LABEL = -1
# Answers longer than this many characters are not read as a label word: a model that
# rambles has not answered the question.
MAX_ANSWER_CHARS = 200


# --- export ---------------------------------------------------------------------------


def chat_example(system_prompt: str, review: str, answer: str | None = None) -> dict:
    """One chat example: system prompt, the review as the user turn, the label word."""
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": review},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return {"messages": messages}


def chat_examples(
    reviews: pd.DataFrame, label_words: Sequence[str], system_prompt: str
) -> list[dict]:
    """Chat examples of ``reviews`` (columns ``text``, ``label``), in row order."""
    missing = {"text", "label"} - set(reviews.columns)
    if missing:
        raise ValueError(
            f"reviews lack column(s) {sorted(missing)}: {list(reviews.columns)}"
        )
    unknown = ~reviews["label"].isin(range(len(label_words)))
    if unknown.any():
        raise ValueError(
            f"{int(unknown.sum())} review(s) have labels outside 0..{len(label_words) - 1}: "
            f"row_id {reviews.loc[unknown, 'row_id'].head(5).tolist() if 'row_id' in reviews else ''}"
        )
    return [
        chat_example(system_prompt, str(text), label_words[int(label)])
        for text, label in zip(reviews["text"], reviews["label"], strict=True)
    ]


def to_jsonl(examples: Iterable[Mapping[str, Any]]) -> str:
    """JSON Lines with real UTF-8 characters (not ``\\u`` escapes): one example a line."""
    return "".join(
        json.dumps(example, ensure_ascii=False) + "\n" for example in examples
    )


def parse_jsonl(text: str, name: str) -> list[dict]:
    """Examples of a JSONL file; a line that is not JSON is an error naming the line."""
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{name} line {number} is not valid JSON: {error}"
            ) from error
    return examples


# --- token counting -----------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """A deliberately high estimate (one token per 3 UTF-8 bytes) for when tiktoken's
    encoding cannot be loaded: English averages about 4 characters per token."""
    return math.ceil(len(text.encode("utf-8")) / 3)


def _load_tiktoken(model: str, timeout_s: float) -> TokenCounter:
    """tiktoken's encoding for ``model``, loaded in a thread: the first load downloads
    it, which offline can hang."""
    import tiktoken

    result: dict[str, Any] = {}

    def load() -> None:
        try:
            result["encoding"] = tiktoken.encoding_for_model(model)
        except Exception as error:  # noqa: BLE001 - reported to the caller below
            result["error"] = error

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "encoding" not in result:
        raise RuntimeError(
            result.get("error")
            or f"loading tiktoken's encoding took over {timeout_s} s"
        )
    encoding = result["encoding"]
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def token_counter_for(
    model: str, settings: ValidationParams
) -> tuple[TokenCounter, str]:
    """A token counter for ``model`` and a description of it for the report."""
    if settings.token_counter != "estimate":
        try:
            import tiktoken

            name = tiktoken.encoding_name_for_model(model)
            return _load_tiktoken(
                model, settings.tiktoken_load_timeout_s
            ), f"tiktoken {name}"
        except Exception as error:
            if settings.token_counter == "tiktoken":
                raise RuntimeError(
                    f"tiktoken's encoding for {model} could not be loaded ({error}); set "
                    "validation.token_counter to auto or estimate to count without it"
                ) from error
            logger.warning(
                "tiktoken's encoding for %s could not be loaded (%s): token counts are "
                "estimated (UTF-8 bytes / 3, on the high side)",
                model,
                error,
            )
    return estimate_tokens, "estimate: UTF-8 bytes / 3 (tiktoken encoding not loaded)"


def chat_tokens(messages: Sequence[Mapping[str, Any]], count: TokenCounter) -> int:
    """Tokens of a chat example as OpenAI's cookbook counts them: 3 per message plus
    its role and content, plus 3 priming the reply."""
    return 3 + sum(
        3 + count(str(m.get("role", ""))) + count(str(m.get("content", "")))
        for m in messages
    )


# --- validation -----------------------------------------------------------------------


def _check_example(example: Any, label_words: Sequence[str]) -> str | None:
    """Why ``example`` is not a valid system/user/assistant example, or ``None``."""
    if not isinstance(example, dict) or not isinstance(example.get("messages"), list):
        return 'not an object with a "messages" list'
    messages = example["messages"]
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles != ["system", "user", "assistant"]:
        return f"roles are {roles}, expected ['system', 'user', 'assistant']"
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            return f"the {message['role']} message has no text"
    answer = messages[2]["content"]
    if answer not in label_words:
        return f"the assistant answer {answer!r} is not one of the label words {list(label_words)}"
    return None


def _file_report(
    text: str,
    name: str,
    label_words: Sequence[str],
    *,
    count: TokenCounter,
    token_limit: int,
    min_examples: int,
) -> tuple[dict[str, Any], list[str]]:
    """Statistics of one JSONL file and the problems found in it."""
    problems: list[str] = []
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        line = text.count("\n", 0, error.start) + 1
        problems.append(
            f"{name} line {line} cannot be encoded as UTF-8: {error.reason}"
        )
        return {"n_examples": 0}, problems
    try:
        examples = parse_jsonl(text, name)
    except ValueError as error:
        return {"n_examples": 0}, [str(error)]
    invalid = []
    for number, example in enumerate(examples, start=1):
        reason = _check_example(example, label_words)
        if reason:
            invalid.append(f"{name} example {number}: {reason}")
    problems.extend(invalid[:10])
    if len(invalid) > 10:
        problems.append(f"{name}: {len(invalid) - 10} more invalid example(s)")
    if len(examples) < min_examples:
        problems.append(
            f"{name} has {len(examples)} example(s); Azure OpenAI needs at least {min_examples}"
        )
    if invalid:
        return {"n_examples": len(examples)}, problems
    tokens = [chat_tokens(example["messages"], count) for example in examples]
    too_long = [i + 1 for i, n in enumerate(tokens) if n > token_limit]
    if too_long:
        problems.append(
            f"{name}: {len(too_long)} example(s) exceed the {token_limit}-token limit "
            f"per example: example number(s) {too_long[:10]}"
        )
    answers = Counter(example["messages"][2]["content"] for example in examples)
    total = sum(tokens)
    return {
        "n_examples": len(examples),
        "label_counts": {word: answers.get(word, 0) for word in label_words},
        "label_shares": {
            word: round(answers.get(word, 0) / max(len(examples), 1), 4)
            for word in label_words
        },
        "tokens": {
            "total": total,
            "mean": round(total / max(len(tokens), 1), 1),
            "max": max(tokens, default=0),
            "n_over_limit": len(too_long),
        },
        "utf8_bytes": len(text.encode("utf-8")),
    }, problems


def validate_chat_jsonl(
    train_jsonl: str,
    validation_jsonl: str,
    label_words: Sequence[str],
    settings: AzureOpenAIParams,
    *,
    count: TokenCounter | None = None,
    counter_name: str | None = None,
) -> dict[str, Any]:
    """Check both files as Azure OpenAI fine-tuning will, before anything is uploaded.

    Raises:
        ValueError: listing every problem (file, example number, reason): fewer than
            ``min_examples`` examples, text that is not UTF-8, lines that are not JSON
            or not system/user/assistant examples, answers that are not label words,
            examples over the token limit, a label word missing from the training file.

    Returns:
        Per file: examples, label counts and shares, token statistics; the trained
        tokens and cost estimate; warnings (label imbalance).
    """
    model = settings.fine_tuning.base_model
    if count is None:
        count, counter_name = token_counter_for(model, settings.validation)
    limit = settings.validation.max_tokens_per_example
    reports, problems = {}, []
    for name, text in (
        ("train.jsonl", train_jsonl),
        ("validation.jsonl", validation_jsonl),
    ):
        reports[name], found = _file_report(
            text,
            name,
            label_words,
            count=count,
            token_limit=limit,
            min_examples=settings.validation.min_examples,
        )
        problems.extend(found)
    train = reports["train.jsonl"]
    warnings: list[str] = []
    if not problems:
        counts = train["label_counts"]
        absent = [word for word, n in counts.items() if n == 0]
        if absent:
            problems.append(f"train.jsonl has no example answering {absent}")
        else:
            ratio = max(counts.values()) / min(counts.values())
            if ratio > settings.validation.max_label_imbalance:
                warnings.append(
                    f"train.jsonl label counts {counts} are imbalanced (ratio "
                    f"{ratio:.2f} > {settings.validation.max_label_imbalance})"
                )
    if problems:
        raise ValueError(
            "The fine-tuning files are not valid for Azure OpenAI:\n- "
            + "\n- ".join(problems)
        )
    for warning in warnings:
        logger.warning(warning)
    epochs = settings.fine_tuning.n_epochs
    assumed_epochs = epochs or settings.cost.assumed_epochs_when_auto
    trained_tokens = train["tokens"]["total"] * assumed_epochs
    return {
        "base_model": model,
        "token_counter": counter_name,
        "max_tokens_per_example": limit,
        "files": reports,
        "estimate": {
            "n_epochs": assumed_epochs,
            "n_epochs_assumed": epochs is None,
            "trained_tokens": trained_tokens,
            "training_cost_usd": round(
                trained_tokens / 1e6 * settings.cost.training_usd_per_million_tokens, 4
            ),
            "hosting_cost_usd_per_hour": settings.cost.hosting_usd_per_hour,
            "prices": settings.cost.model_dump(),
            "note": "list prices from parameters; check the Azure OpenAI pricing page",
        },
        "warnings": warnings,
    }


def fine_tuning_job_request(settings: FineTuningParams) -> dict[str, Any]:
    """The body of ``POST /openai/fine_tuning/jobs`` without the file ids."""
    hyperparameters = {
        key: value
        for key, value in (
            ("n_epochs", settings.n_epochs),
            ("batch_size", settings.batch_size),
            ("learning_rate_multiplier", settings.learning_rate_multiplier),
        )
        if value is not None
    }
    request: dict[str, Any] = {"model": settings.base_model}
    if hyperparameters:
        request["hyperparameters"] = hyperparameters
    if settings.seed is not None:
        request["seed"] = settings.seed
    if settings.suffix:
        request["suffix"] = settings.suffix
    return request


# --- answers --------------------------------------------------------------------------

_STRIP = " \t\r\n.,;:!?\"'`*_()[]{}<>"


def parse_label_word(answer: str | None, label_words: Sequence[str]) -> int:
    """The class id a chat answer names, or ``-1`` when it names none or several.

    Case, surrounding punctuation and markdown are ignored (``"Positive."``), and a
    short sentence naming exactly one label word counts (``"The review is negative"``).
    Answers naming two label words, none, or rambling past ``MAX_ANSWER_CHARS`` are
    unparseable.
    """
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return INVALID_LABEL
    words = [w.lower() for w in label_words]
    cleaned = answer.strip(_STRIP).lower()
    if cleaned in words:
        return words.index(cleaned)
    found = {
        i
        for i, word in enumerate(words)
        if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", cleaned)
    }
    return found.pop() if len(found) == 1 else INVALID_LABEL
