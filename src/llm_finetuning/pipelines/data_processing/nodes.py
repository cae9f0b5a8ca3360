"""Nodes of the ``data_processing`` pipeline.

Raw labelled text from any supported source -> validated, cleaned splits and a data
quality report -> stratified train / validation / test samples -> unpadded token ids
for the model the training pipeline fine-tunes.

Every node is a pure function of its inputs and parameters; the catalog does the I/O.
Intermediates before validation stay in memory, so bad input stops the run before
anything is written. The data quality report is written last, by
:func:`report_data_quality`, because it also counts what tokenization truncated.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llm_finetuning.models import ModelParams, load_tokenizer
from llm_finetuning.pipelines.data_processing.encoding import decoding_hint
from llm_finetuning.pipelines.data_processing.params import (
    CleaningParams,
    SampleSize,
    SamplingParams,
    SourceParams,
    TokenizationParams,
)
from llm_finetuning.truncation import encode_texts

# datasets, scikit-learn and transformers load in the nodes that use them, so building
# the pipelines (``kedro registry list``, the start of every run) does not import them.
if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict, Features
    from transformers import PreTrainedTokenizerBase
else:
    # Kedro resolves node functions' type hints (typing.get_type_hints) to validate
    # their ``params:`` inputs: these names must resolve without the imports.
    Dataset = DatasetDict = Features = PreTrainedTokenizerBase = Any

logger = logging.getLogger(__name__)

ROW_ID, TEXT, LABEL = "row_id", "text", "label"
# A column some sources (the aclImdb dataset) carry to say which file a row came from.
FILE_COLUMN = "file"
ROWS_SHOWN = 5
SPLITS = ("train", "validation", "test")
_HTML_LINE_BREAK = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)
# Terminal escape sequences (ECMA-48) pasted or scraped into reviews. They go before
# the lone control characters below, or removing ESC alone would leave "[31m" in the
# text. CSI: ESC [ parameters intermediates final byte. OSC: ESC ] ... BEL or ESC \.
# Lone: ESC, optional intermediates, one final byte (ESC 7, ESC c, ESC ( B, ...).
_CSI = r"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
_OSC = r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
_LONE_ESCAPE = r"\x1b[\x20-\x2f]*[\x30-\x7e]"
_ANSI_ESCAPE = f"{_CSI}|{_OSC}|{_LONE_ESCAPE}"
# C0 controls except tab, newline and carriage return, plus DEL: invisible, and the
# byte-level tokenizers turn each into tokens of its own. ESC (0x1b) is in the range,
# so one search finds the rows with either kind.
_CONTROL_CHARACTER = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# Longest label value quoted in an error (a swapped column holds whole reviews).
_LABEL_SHOWN = 40


def tokenized_features() -> Features:
    """The tokenized splits' columns.

    Compact on disk and in memory: GPT-2 ids fit in int32 and the mask is all ones
    (no padding), so int8 is enough. The training collator converts to int64 tensors.
    """
    from datasets import Features, List, Value

    return Features(
        {
            ROW_ID: Value("int64"),
            "input_ids": List(Value("int32")),
            "attention_mask": List(Value("int8")),
            "labels": Value("int64"),
            "length": Value("int32"),
        }
    )


def _is_hf(value: Any, *names: str) -> bool:
    """Whether ``value`` is one of the ``datasets`` classes ``names``.

    Checked without importing datasets: an instance of its classes implies it is loaded.
    """
    module = sys.modules.get("datasets")
    return module is not None and isinstance(
        value, tuple(getattr(module, name) for name in names)
    )


# Token count before truncation: only for the summary, dropped before saving.
_UNTRUNCATED = "untruncated_length"


@dataclass
class RawSplit:
    """One raw split as a table, with where it came from (for error messages).

    ``frame`` has ``row_id`` (position in the source split), ``text`` and ``label``
    with the source's values untouched, plus ``file`` when the source names files.
    """

    frame: pd.DataFrame
    source: str


class DataValidationError(ValueError):
    """Raw data that cannot be used; the message names source, column and rows."""


# --------------------------------------------------------------------------- load


def load_raw_splits(raw_reviews: Any, source: SourceParams) -> dict[str, RawSplit]:
    """Pick the train and test splits out of whatever ``raw_reviews`` loaded as.

    Accepts a Hugging Face ``DatasetDict`` (``huggingface.HFDataset`` and friends), a
    ``PartitionedDataset``'s dict of load functions (one file per split), a dict of
    DataFrames (``AclImdbDataset``) or one table (a single file: split
    ``train_split``). Columns are renamed to ``text`` and ``label``; values are
    checked by :func:`validate_and_clean`.

    Returns:
        ``{"train": ..., "test": ...}`` (no ``test`` when ``test_split`` is null).
    """
    params = SourceParams.model_validate(source)
    available = _as_split_mapping(raw_reviews, params)
    roles = {"train": params.train_split}
    if params.test_split is not None:
        roles["test"] = params.test_split
    missing = [name for name in roles.values() if name not in available]
    if missing:
        raise DataValidationError(
            f"raw_reviews has no split(s) {missing}; it has {sorted(available)}. "
            "Set data_processing.source.train_split / test_split."
        )
    return {
        role: _read_split(available[name], name, params) for role, name in roles.items()
    }


def _as_split_mapping(raw_reviews: Any, params: SourceParams) -> dict[str, Any]:
    if _is_hf(raw_reviews, "IterableDatasetDict", "IterableDataset"):
        raise DataValidationError(
            "raw_reviews is a streaming (iterable) dataset; load it without "
            "streaming=True so it can be deduplicated and sampled"
        )
    if isinstance(raw_reviews, Mapping):
        return {str(name): split for name, split in raw_reviews.items()}
    if isinstance(raw_reviews, pd.DataFrame) or _is_hf(raw_reviews, "Dataset"):
        if params.test_split is not None:
            raise DataValidationError(
                "raw_reviews is a single table, so it has no test split: set "
                "data_processing.source.test_split to null to carve test from it"
            )
        return {params.train_split: raw_reviews}
    raise DataValidationError(
        f"raw_reviews loaded as {type(raw_reviews).__name__}; expected a DatasetDict, "
        "a dict of DataFrames or load functions (PartitionedDataset), or one table"
    )


def _loader_filepath(loader: Callable[[], Any]) -> Any | None:
    """The file behind a PartitionedDataset load function (a bound ``load``)."""
    return getattr(getattr(loader, "__self__", None), "_filepath", None)


def _describe_loader(loader: Callable[[], Any], split: str) -> str:
    """Name the file behind a PartitionedDataset load function, where it has one."""
    filepath = _loader_filepath(loader)
    if filepath is not None:
        return f"raw_reviews split '{split}' (file {filepath})"
    dataset = getattr(loader, "__self__", None)
    return f"raw_reviews split '{split}' ({dataset or loader})"


def _read_split(raw: Any, split: str, params: SourceParams) -> RawSplit:
    source = f"raw_reviews split '{split}'"
    if callable(raw) and not (isinstance(raw, pd.DataFrame) or _is_hf(raw, "Dataset")):
        source = _describe_loader(raw, split)
        try:
            raw = raw()
        except Exception as exc:
            # A partition is read here, not by the runner, so the catalog-level hook
            # never sees it: the hint goes in this node's own error.
            hint = decoding_hint(
                exc,
                "raw_reviews",
                _loader_filepath(raw),
                "dataset: {load_args: {encoding: ...}} (the files' dataset)",
            )
            message = f"Cannot read {source}: {exc}"
            raise DataValidationError(
                message if hint is None else f"{message}\n{hint}"
            ) from exc
    if _is_hf(raw, "Dataset"):
        name = raw.info.dataset_name or raw.info.builder_name
        if name:
            source = f"{source} (Hugging Face dataset {name})"
        frame = raw.to_pandas()
    elif isinstance(raw, pd.DataFrame):
        frame = raw
    else:
        raise DataValidationError(
            f"{source} loaded as {type(raw).__name__}, not a table"
        )
    if frame.empty:
        raise DataValidationError(f"{source} is empty: no rows")
    wanted = {params.text_column: "text_column", params.label_column: "label_column"}
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        settings = ", ".join(f"data_processing.source.{wanted[c]}" for c in missing)
        raise DataValidationError(
            f"{source} has no column(s) {missing}; its columns are "
            f"{list(frame.columns)}. Set {settings}."
        )
    table = pd.DataFrame(
        {
            ROW_ID: np.arange(len(frame), dtype="int64"),
            TEXT: frame[params.text_column].to_numpy(dtype=object),
            LABEL: frame[params.label_column].to_numpy(dtype=object),
        }
    )
    if FILE_COLUMN in frame.columns:
        table[FILE_COLUMN] = frame[FILE_COLUMN].to_numpy(dtype=object)
    return RawSplit(frame=table, source=source)


# ----------------------------------------------------------------------- validate


def validate_and_clean(
    raw_splits: dict[str, RawSplit],
    source: SourceParams,
    cleaning: CleaningParams,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], list[str]]:
    """Check the raw splits, clean the text, map labels and remove duplicates and leaks.

    Stops with :class:`DataValidationError` (naming source, column and rows) on a
    label outside the mapping, a text that is not a string, a split without any
    non-empty text, or a train split left with fewer than two classes. Otherwise
    removes, and counts per reason: terminal escape sequences and control characters
    in the text; missing or empty text, exact duplicates within a split, texts seen
    with different labels in a split, and train texts that are also in test
    (evaluation leakage). A class missing from a split is a warning.

    Returns:
        The clean splits (``row_id``, ``text``, ``label`` as class id), the data
        quality report so far (:func:`report_data_quality` completes it) and the
        class names by id.
    """
    source = SourceParams.model_validate(source)
    cleaning = CleaningParams.model_validate(cleaning)
    names = source.class_names()
    lookup = source.label_lookup()

    # Check every split before cleaning any, so one run reports the first bad split.
    checked = {
        role: _checked_split(raw, source, lookup, cleaning)
        for role, raw in raw_splits.items()
    }
    report: dict[str, Any] = {"label_names": names, "splits": {}, "warnings": []}
    clean: dict[str, pd.DataFrame] = {}
    for role, (table, empty_labels, characters) in checked.items():
        clean[role], duplicates = _drop_duplicates(table)
        report["splits"][role] = {
            "source": raw_splits[role].source,
            "rows_before": len(raw_splits[role].frame),
            "labels_before": _label_counts(
                pd.concat([table[LABEL], empty_labels]), names
            ),
            "cleaned": characters,
            "removed": {"empty_text": len(empty_labels), **duplicates},
        }
    if "test" in clean:
        in_test = clean["train"][TEXT].isin(set(clean["test"][TEXT]))
        clean["train"] = clean["train"][~in_test]
        report["splits"]["train"]["removed"]["in_test_split"] = int(in_test.sum())
    for role, table in clean.items():
        if table.empty:
            raise DataValidationError(
                f"{raw_splits[role].source}: no rows left after cleaning "
                f"({report['splits'][role]['removed']})"
            )
        clean[role] = table.reset_index(drop=True)
        entry = report["splits"][role]
        entry["rows_after"] = len(table)
        entry["labels_after"] = _label_counts(table[LABEL], names)
    _check_train_classes(report["splits"]["train"], source)
    for role, entry in report["splits"].items():
        warning = _missing_classes_warning(
            f"The {role} split ({entry['source']})", entry["labels_after"]
        )
        if warning is not None:
            report["warnings"].append(warning)
    for warning in report["warnings"]:
        logger.warning("%s", warning)
    logger.info(
        "Cleaned: %s (the data quality report has the details)",
        "; ".join(
            f"{role} {entry['rows_after']} rows kept of {entry['rows_before']}"
            for role, entry in report["splits"].items()
        ),
    )
    return clean, report, names


def _check_train_classes(entry: dict[str, Any], source: SourceParams) -> None:
    """Stop when train has fewer than two classes: no classifier can learn from it.

    Such a run trains without an error and gives a model that predicts one class.
    """
    counts = entry["labels_after"]
    present = [name for name, count in counts.items() if count > 0]
    if len(present) >= 2:
        return
    if len(counts) < 2:  # the configuration itself has one class
        raise DataValidationError(
            f"{entry['source']}: data_processing.source defines {len(counts)} "
            f"class(es) {list(counts)}, a classifier needs at least 2. Set "
            "data_processing.source.label_names"
            + ("" if source.label_mapping is None else " and label_mapping")
            + "."
        )
    raise DataValidationError(
        f"{entry['source']}: the train split has reviews of {len(present)} class(es) "
        f"after cleaning, a classifier needs at least 2. Label counts after "
        f"cleaning {counts}, before {entry['labels_before']}. Check the train data "
        f"and data_processing.source.label_column ('{source.label_column}')"
        + (
            ""
            if source.label_mapping is None
            else " and data_processing.source.label_mapping"
        )
        + "."
    )


def _missing_classes_warning(what: str, counts: dict[str, int]) -> str | None:
    """A warning naming the classes with no reviews in ``counts``; None if none."""
    missing = [name for name, count in counts.items() if count == 0]
    if not missing or not any(counts.values()):
        return None
    return (
        f"{what} has no reviews of class(es) {missing} (label counts {counts}): "
        "metrics on it say nothing about those classes"
    )


def _remove_control_characters(text: pd.Series) -> tuple[pd.Series, dict[str, int]]:
    """Remove terminal escape sequences, then the other control characters; count.

    Only the rows holding a control character are rewritten: one vectorised search
    over all rows, then the two replacements on the few that match.
    """
    has_control = text.str.contains(_CONTROL_CHARACTER, regex=True).to_numpy(dtype=bool)
    counts = {
        "reviews_with_control_characters": int(has_control.sum()),
        "ansi_escape_sequences": 0,
        "control_characters": 0,
    }
    if not has_control.any():
        return text, counts
    affected = text[has_control]
    counts["ansi_escape_sequences"] = int(affected.str.count(_ANSI_ESCAPE).sum())
    affected = affected.str.replace(_ANSI_ESCAPE, "", regex=True)
    counts["control_characters"] = int(affected.str.count(_CONTROL_CHARACTER).sum())
    affected = affected.str.replace(_CONTROL_CHARACTER, "", regex=True)
    text = text.copy()
    text[has_control] = affected
    return text, counts


def _checked_split(
    raw: RawSplit,
    source: SourceParams,
    lookup: dict[str, int],
    cleaning: CleaningParams,
) -> tuple[pd.DataFrame, pd.Series, dict[str, int]]:
    """Map labels and clean text of one split.

    Raises on bad types and unknown labels; rows with missing or blank text are left
    out (their labels are returned so the report can count them), as are the counts
    of removed escape sequences and control characters.
    """
    frame = raw.frame
    text = frame[TEXT]
    missing = text.isna().to_numpy()
    not_string = ~missing & ~np.fromiter(
        (isinstance(value, str) for value in text), dtype=bool, count=len(text)
    )
    if not_string.any():
        kinds = sorted({type(v).__name__ for v in text[not_string]})
        raise DataValidationError(
            f"{raw.source}: column '{source.text_column}' must hold text, but "
            f"{_rows(frame, not_string)} hold {', '.join(kinds)}"
        )
    labels = _map_labels(frame[LABEL], lookup)
    unknown = labels.isna().to_numpy()
    if unknown.any():
        raise DataValidationError(_unknown_labels_message(raw, source, unknown))
    cleaned = text.where(~missing, "").astype(str)
    cleaned, characters = _remove_control_characters(cleaned)
    if cleaning.html_line_breaks_to_newlines:
        cleaned = cleaned.str.replace(_HTML_LINE_BREAK, "\n", regex=True)
    cleaned = cleaned.str.strip()
    empty = (cleaned == "").to_numpy()
    if empty.all():
        raise DataValidationError(
            f"{raw.source}: column '{source.text_column}' has no non-empty text in "
            f"any of its {len(frame)} rows"
        )
    table = pd.DataFrame(
        {
            ROW_ID: frame[ROW_ID].astype("int64"),
            TEXT: cleaned,
            LABEL: labels.astype("int64"),
        }
    )
    return table[~empty], table[LABEL][empty], characters


def _shown_label(value: Any) -> str:
    """``repr`` of a raw label, cut short (a swapped column holds whole reviews)."""
    shown = repr(value)
    return shown if len(shown) <= _LABEL_SHOWN else f"{shown[: _LABEL_SHOWN - 3]}..."


def _unknown_labels_message(
    raw: RawSplit, source: SourceParams, unknown: np.ndarray
) -> str:
    """Which labels were found, which are expected, and which parameter to set.

    Quotes only what is configured: with no ``label_mapping`` the expected labels
    are the class ids, not a mapping.
    """
    frame = raw.frame
    found = sorted({_shown_label(v) for v in frame[LABEL][unknown]})
    more = len(found) - ROWS_SHOWN
    found_text = ", ".join(found[:ROWS_SHOWN]) + (
        f" and {more} more" if more > 0 else ""
    )
    column = f"column '{source.label_column}'"
    names = source.class_names()
    if source.label_mapping is None:
        return (
            f"{raw.source}: {column} has labels outside the class ids 0..{len(names) - 1} "
            f"in {_rows(frame, unknown)}: found {found_text}. "
            "data_processing.source.label_mapping is not set, so the labels must "
            f"already be class ids 0..{len(names) - 1} (label_names {names}). Set "
            "data_processing.source.label_mapping to map each raw label to a class "
            "id, or data_processing.source.label_column to the column holding the "
            "labels."
        )
    expected = ", ".join(repr(key) for key in source.label_mapping)
    return (
        f"{raw.source}: {column} has labels outside "
        f"data_processing.source.label_mapping in {_rows(frame, unknown)}: found "
        f"{found_text}; expected one of its keys {expected}. Add them to "
        "data_processing.source.label_mapping, or set "
        "data_processing.source.label_column to the column holding the labels."
    )


def _map_labels(raw_labels: pd.Series, lookup: dict[str, int]) -> pd.Series:
    """Class id per row (NaN where the raw value is not in the mapping).

    Raw values are compared as text, so ``1``, ``1.0`` (CSV columns with gaps) and
    ``"1"`` all match a mapping key ``1``.
    """

    def key(value: Any) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return str(int(value))
        if isinstance(value, np.integer):
            return str(int(value))
        return str(value)

    ids = {value: lookup.get(key(value)) for value in pd.unique(raw_labels)}
    return raw_labels.map(ids).astype("float64")


def _drop_duplicates(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep the first of exact duplicates; drop texts seen with different labels."""
    duplicate = table.duplicated([TEXT, LABEL], keep="first")
    unique = table[~duplicate]
    conflicting = unique[TEXT].duplicated(keep=False)
    return unique[~conflicting], {
        "duplicate": int(duplicate.sum()),
        "conflicting_labels": int(conflicting.sum()),
    }


def _label_counts(labels: pd.Series, names: list[str]) -> dict[str, int]:
    counts = labels.value_counts()
    return {name: int(counts.get(i, 0)) for i, name in enumerate(names)}


def _rows(frame: pd.DataFrame, mask: np.ndarray) -> str:
    """'rows 3, 17 and 2 more' (0-based positions in the source split), with files."""
    positions = np.flatnonzero(mask)
    shown = []
    for position in positions[:ROWS_SHOWN]:
        row = f"{frame[ROW_ID].iat[position]}"
        if FILE_COLUMN in frame.columns:
            row += f" ({frame[FILE_COLUMN].iat[position]})"
        shown.append(row)
    more = len(positions) - len(shown)
    noun = "row" if len(positions) == 1 else "rows"
    return f"{noun} {', '.join(shown)}" + (f" and {more} more" if more else "")


# ------------------------------------------------------------------------- sample


def sample_splits(
    clean_splits: dict[str, pd.DataFrame],
    sampling: SamplingParams,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Draw stratified, seeded train, validation and test samples.

    Validation comes from the train split only; test from the test split (or, when
    the source has none, carved from train first). Each sample keeps the label
    proportions of the split it is drawn from and is ordered by ``row_id``.
    """
    params = SamplingParams.model_validate(sampling)
    pool = clean_splits["train"]
    if "test" in clean_splits:
        test, _ = _stratified_take(clean_splits["test"], params.test_size, seed, "test")
    else:
        if params.test_size == "all":
            raise ValueError(
                "data_processing.sampling.test_size cannot be 'all' when test is "
                "carved from the train split (source.test_split is null)"
            )
        test, pool = _stratified_take(pool, params.test_size, seed, "test")
    validation, pool = _stratified_take(
        pool, params.validation_size, seed, "validation"
    )
    train, _ = _stratified_take(pool, params.train_size, seed, "train")
    samples = tuple(
        frame.sort_values(ROW_ID).reset_index(drop=True)[[ROW_ID, TEXT, LABEL]]
        for frame in (train, validation, test)
    )
    logger.info(
        "Sampled %s reviews (train / validation / test), seed %d",
        " / ".join(str(len(frame)) for frame in samples),
        seed,
    )
    return samples  # type: ignore[return-value]


def _stratified_take(
    frame: pd.DataFrame, size: SampleSize, seed: int, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified sample of ``size`` rows and the rest."""
    if size == "all" or size == len(frame):
        return frame, frame.iloc[:0]
    if size == 0:
        return frame.iloc[:0], frame
    if size > len(frame):
        raise ValueError(
            f"data_processing.sampling asks for {size} {what} reviews but only "
            f"{len(frame)} are available after cleaning; use a smaller size or 'all'"
        )
    from sklearn.model_selection import train_test_split

    try:
        taken, rest = train_test_split(
            frame, train_size=size, stratify=frame[LABEL], random_state=seed
        )
    except ValueError as exc:
        counts = frame[LABEL].value_counts().sort_index().to_dict()
        raise ValueError(
            f"Cannot draw a stratified sample of {size} {what} reviews from "
            f"{len(frame)} with label counts {counts}: {exc}"
        ) from exc
    return taken, rest


# ----------------------------------------------------------------------- tokenize


def tokenize_splits(
    train_reviews: pd.DataFrame,
    validation_reviews: pd.DataFrame,
    test_reviews: pd.DataFrame,
    model: ModelParams,
    tokenization: TokenizationParams,
) -> tuple[DatasetDict, dict[str, Any]]:
    """Tokenize the samples with the training model's tokenizer, without padding.

    Batches go through the fast (Rust) tokenizer via ``Dataset.map`` with a progress
    bar; texts are cut to ``model.max_length`` tokens by ``model.truncation``
    (:func:`llm_finetuning.truncation.encode_texts`, shared with serving and
    scoring). Padding is left to the training collator (per batch), so no padding
    tokens are stored.

    Returns:
        ``DatasetDict`` ``train``/``validation``/``test`` with ``row_id``,
        ``input_ids``, ``attention_mask``, ``labels`` and ``length`` (tokens kept),
        and the token-length summary per split (lengths before truncation).
    """
    spec = ModelParams.model_validate(model)
    params = TokenizationParams.model_validate(tokenization)
    tokenizer = load_tokenizer(spec)
    if not tokenizer.is_fast:
        raise ValueError(
            f"Tokenizer '{spec.tokenizer_location}' has no fast (Rust) version; "
            "the pipeline needs one for batched tokenization"
        )
    frames = dict(
        zip(SPLITS, (train_reviews, validation_reviews, test_reviews), strict=True)
    )
    tokenized, summary = (
        {},
        {
            "tokenizer": spec.tokenizer_location,
            "max_length": spec.max_length,
            "truncation": spec.truncation,
        },
    )
    for split, frame in frames.items():
        started = time.perf_counter()
        with_lengths = _tokenize_frame(frame, tokenizer, spec, params, split)
        elapsed = time.perf_counter() - started
        summary[split] = _length_summary(
            with_lengths[_UNTRUNCATED], with_lengths["length"], spec.max_length
        )
        tokenized[split] = with_lengths.remove_columns(_UNTRUNCATED)
        logger.info(
            "Tokenized %d %s reviews in %.1f s (%.0f reviews/s, %.0f tokens/s)",
            len(frame),
            split,
            elapsed,
            len(frame) / max(elapsed, 1e-9),
            sum(with_lengths["length"]) / max(elapsed, 1e-9),
        )
    logger.info(
        "Truncated at %d tokens (%s): %s",
        spec.max_length,
        spec.truncation,
        ", ".join(
            f"{split} {summary[split]['truncated']} of {len(frames[split])}"
            for split in SPLITS
            if "truncated" in summary[split]
        ),
    )
    from datasets import DatasetDict

    return DatasetDict(tokenized), summary


def _tokenize_frame(
    frame: pd.DataFrame,
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelParams,
    params: TokenizationParams,
    split: str,
) -> Dataset:
    from datasets import Dataset, Features, Value

    features = Features({**tokenized_features(), _UNTRUNCATED: Value("int32")})
    if frame.empty:
        return Dataset.from_dict({name: [] for name in features}, features=features)
    reviews = Dataset.from_pandas(frame[[ROW_ID, TEXT, LABEL]], preserve_index=False)
    return reviews.map(
        partial(_tokenize_batch, tokenizer=tokenizer, spec=spec),
        batched=True,
        batch_size=params.batch_size,
        remove_columns=[TEXT, LABEL],
        features=features,
        desc=f"Tokenizing {split}",
    )


def _tokenize_batch(
    batch: dict[str, list[Any]],
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelParams,
) -> dict[str, list[Any]]:
    encoded = encode_texts(
        tokenizer, batch[TEXT], spec.max_length, spec.truncation, spec.head_tokens
    )
    return {
        "input_ids": encoded.input_ids,
        "attention_mask": encoded.attention_mask,
        "labels": batch[LABEL],
        "length": [len(ids) for ids in encoded.input_ids],
        _UNTRUNCATED: encoded.lengths_before,
    }


def _length_summary(
    untruncated: list[int], kept: list[int], max_length: int
) -> dict[str, float | int]:
    """Token counts before truncation (mean, percentiles, max), the number and share
    of reviews truncated (longer than ``max_length`` tokens) and the tokens kept."""
    if len(untruncated) == 0:
        return {"reviews": 0}
    lengths = np.asarray(untruncated)
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    return {
        "reviews": int(lengths.size),
        "mean": round(float(lengths.mean()), 1),
        "p50": round(float(p50), 1),
        "p90": round(float(p90), 1),
        "p99": round(float(p99), 1),
        "max": int(lengths.max()),
        "truncated": int((lengths > max_length).sum()),
        "share_truncated": round(float((lengths > max_length).mean()), 4),
        "tokens_kept": int(np.sum(kept)),
    }


# ------------------------------------------------------------------------- report


def report_data_quality(
    cleaning_report: dict[str, Any],
    train_reviews: pd.DataFrame,
    validation_reviews: pd.DataFrame,
    test_reviews: pd.DataFrame,
    token_length_summary: dict[str, Any],
) -> dict[str, Any]:
    """Complete the data quality report with the samples and what truncation cut.

    Adds ``samples``: ``max_length`` (from the token-length summary, i.e. the
    ``model.max_length`` tokenization used) and, per sample, its reviews, label
    counts, and the number and share of reviews truncated. A class missing from
    the validation or test sample is a warning (logged), not an error.

    Returns:
        The report the catalog saves as ``data_quality_report``.
    """
    report = {**cleaning_report, "warnings": list(cleaning_report.get("warnings", []))}
    names = report["label_names"]
    frames = dict(
        zip(SPLITS, (train_reviews, validation_reviews, test_reviews), strict=True)
    )
    samples: dict[str, Any] = {"max_length": token_length_summary["max_length"]}
    for split, frame in frames.items():
        lengths = token_length_summary.get(split, {})
        samples[split] = {
            "reviews": len(frame),
            "labels": _label_counts(frame[LABEL], names),
            "truncated": int(lengths.get("truncated", 0)),
            "share_truncated": float(lengths.get("share_truncated", 0.0)),
        }
    for split in ("validation", "test"):
        warning = _missing_classes_warning(
            f"The {split} sample", samples[split]["labels"]
        )
        if warning is not None:
            logger.warning("%s", warning)
            report["warnings"].append(warning)
    report["samples"] = samples
    logger.info(
        "Samples: %s reviews (train / validation / test), %d warnings",
        " / ".join(str(samples[split]["reviews"]) for split in SPLITS),
        len(report["warnings"]),
    )
    return report
