"""The ``data_processing`` parameters block (conf/<env>/parameters_data_processing.yml).

The nodes take the four sub-blocks (Kedro checks each before any node runs);
:class:`DataProcessingParams` is the whole block, which the tests check every env
against. The tokenizer comes from the shared ``model`` block, the seed from
``runtime.seed``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from llm_finetuning.params import Params, count_or

SampleSize = Annotated[int | Literal["all"], count_or("all")]


class SourceParams(Params):
    """``data_processing.source``: where the text and labels are in the raw data.

    Attributes:
        text_column: Column holding the text.
        label_column: Column holding the raw label.
        label_mapping: Raw label value -> class id (0..K-1); several raw values may
            share an id (e.g. star ratings). ``None``: labels already are the ids.
        label_names: Class names ordered by id. Defaults to the first raw value
            mapped to each id.
        train_split: Name of the raw split that provides train (and validation).
        test_split: Name of the raw split that provides test; ``None`` carves test
            from ``train_split`` (for a single table of labelled text).
    """

    key: ClassVar[str] = "data_processing.source"

    text_column: str = "text"
    label_column: str = "label"
    label_mapping: dict[Any, int] | None = None
    label_names: list[str] | None = None
    train_split: str = "train"
    test_split: str | None = "test"

    @model_validator(mode="after")
    def _labels_fit_together(self) -> SourceParams:
        if self.label_mapping is None:
            if not self.label_names:
                raise ValueError(
                    "needs label_names when label_mapping is null (labels are then "
                    "the class ids 0..K-1)"
                )
            return self
        ids = sorted(set(self.label_mapping.values()))
        if ids != list(range(len(ids))):
            raise ValueError(
                f"label_mapping must map raw labels to the class ids 0..K-1, got ids {ids}"
            )
        if self.label_names is not None and len(self.label_names) != len(ids):
            raise ValueError(
                f"label_names has {len(self.label_names)} names for {len(ids)} class "
                "ids in label_mapping"
            )
        return self

    def class_names(self) -> list[str]:
        """Class names by id (the first raw value per id without ``label_names``)."""
        if self.label_names is not None:
            return [str(name) for name in self.label_names]
        first_raw: dict[int, str] = {}
        for raw, class_id in (self.label_mapping or {}).items():
            first_raw.setdefault(class_id, str(raw))
        return [first_raw[i] for i in sorted(first_raw)]

    def label_lookup(self) -> dict[str, int]:
        """Raw label (as text) -> class id; identity on 0..K-1 without a mapping."""
        if self.label_mapping is None:
            return {str(i): i for i in range(len(self.class_names()))}
        return {str(raw): class_id for raw, class_id in self.label_mapping.items()}


class CleaningParams(Params):
    """``data_processing.cleaning``.

    Attributes:
        html_line_breaks_to_newlines: Turn ``<br />`` (IMDB's line breaks) into
            newlines before stripping.
    """

    key: ClassVar[str] = "data_processing.cleaning"

    html_line_breaks_to_newlines: bool = True


class SamplingParams(Params):
    """``data_processing.sampling``: rows per split, a count or ``all``.

    Validation is carved from the train split (never from test); train then takes
    ``train_size`` of what is left.
    """

    key: ClassVar[str] = "data_processing.sampling"

    train_size: SampleSize = 1_000
    validation_size: Annotated[int, count_or()] = 500
    test_size: SampleSize = 500


class TokenizationParams(Params):
    """``data_processing.tokenization``.

    Attributes:
        batch_size: Reviews per call of the fast tokenizer in ``Dataset.map``.
    """

    key: ClassVar[str] = "data_processing.tokenization"

    batch_size: int = Field(1_000, ge=1)


class DataProcessingParams(Params):
    """The whole ``data_processing`` block."""

    key: ClassVar[str] = "data_processing"

    source: SourceParams
    cleaning: CleaningParams = CleaningParams()
    sampling: SamplingParams = SamplingParams()
    tokenization: TokenizationParams = TokenizationParams()
