"""The ``evaluation`` parameters block (conf/<env>/parameters_evaluation.yml), typed.

The nodes take the sub-blocks (Kedro checks each before any node runs);
:class:`EvaluationParams` is the whole block, which the tests check every env against.
Seeds come from ``runtime.seed``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from llm_finetuning.params import Params


class InferenceParams(Params):
    """How the fine-tuned model is run over the test set.

    Attributes:
        batch_size: Reviews per forward pass. Batches are formed after sorting by
            length, so padding stays small even for large batches.
        device: ``auto`` (CUDA, then Apple MPS, then CPU) or a torch device string.
        pad_to_multiple_of: Pad each batch to a multiple of this many tokens (8 suits
            GPU tensor cores); ``None`` pads to the longest review in the batch.
    """

    key: ClassVar[str] = "evaluation.inference"

    batch_size: int = Field(32, ge=1)
    device: str = "auto"
    pad_to_multiple_of: int | None = Field(None, ge=1)


class ScoringParams(Params):
    """Bootstrap and calibration settings of :func:`llm_finetuning.metrics.score_predictions`.

    Attributes:
        n_bootstrap: Resamples for the confidence intervals.
        confidence_level: Of the intervals (0.95: 95%).
        calibration_bins: Equal-width confidence bins (ECE and reliability diagram).
    """

    key: ClassVar[str] = "evaluation.scoring"

    n_bootstrap: int = Field(1000, ge=1)
    confidence_level: float = Field(0.95, gt=0, lt=1)
    calibration_bins: int = Field(10, ge=1)


class ReportParams(Params):
    """Error analysis, length buckets and figure titles.

    Attributes:
        model_name: How figures and the comparison table name the evaluated model.
        top_k_mistakes: How many of the most confident mistakes to keep for review.
        length_buckets: Number of review-length buckets (equal-count quantiles of the
            review length in words) in the accuracy-by-length table and plot.
    """

    key: ClassVar[str] = "evaluation.report"

    model_name: str = "fine-tuned model"
    top_k_mistakes: int = Field(50, ge=1)
    length_buckets: int = Field(5, ge=1)


class TfidfLogRegParams(Params):
    """The TF-IDF + logistic regression baseline (scikit-learn's own parameter names).

    Attributes:
        ngram_range: Word n-gram sizes, ``[1, 2]`` for unigrams and bigrams.
        min_df: Ignore n-grams seen in fewer training reviews than this.
        max_features: Keep at most this many n-grams (``None``: all).
        sublinear_tf: Use ``1 + log(tf)``: long reviews do not dominate.
        C: Inverse regularisation strength of the logistic regression.
        max_iter: Solver iterations.
    """

    key: ClassVar[str] = "evaluation.baselines.tfidf_logreg"

    ngram_range: tuple[int, int] = (1, 2)
    min_df: int = Field(2, ge=1)
    max_features: int | None = Field(None, ge=1)
    sublinear_tf: bool = True
    C: float = Field(4.0, gt=0)
    max_iter: int = Field(1000, ge=1)

    @field_validator("ngram_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1]:
            raise ValueError(f"must be [min, max] with 1 <= min <= max, not {value}")
        return value


class BaselinesParams(Params):
    """``evaluation.baselines``: the models the fine-tuned one is compared with."""

    key: ClassVar[str] = "evaluation.baselines"

    tfidf_logreg: TfidfLogRegParams = TfidfLogRegParams()


class EvaluationParams(Params):
    """The whole ``evaluation`` block."""

    key: ClassVar[str] = "evaluation"

    inference: InferenceParams = InferenceParams()
    scoring: ScoringParams = ScoringParams()
    report: ReportParams = ReportParams()
    baselines: BaselinesParams = BaselinesParams()
