"""Typed forms of the ``evaluation`` parameter blocks (conf/<env>/parameters_evaluation.yml)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

_Config = TypeVar("_Config")


def _from_params(
    cls: type[_Config], params: dict[str, Any] | None, block: str
) -> _Config:
    """Build ``cls`` from a parameters block, rejecting unknown keys by name."""
    params = dict(params or {})
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(params) - known
    if unknown:
        raise ValueError(
            f"Unknown key(s) {sorted(unknown)} in the '{block}' parameters; "
            f"expected some of {sorted(known)}"
        )
    return cls(**params)


@dataclass(frozen=True)
class InferenceConfig:
    """How the fine-tuned model is run over the test set.

    Attributes:
        batch_size: Reviews per forward pass. Batches are formed after sorting by
            length, so padding stays small even for large batches.
        device: ``auto`` (CUDA, then Apple MPS, then CPU) or a torch device string.
        pad_to_multiple_of: Pad each batch to a multiple of this many tokens (8 suits
            GPU tensor cores); ``None`` pads to the longest review in the batch.
    """

    batch_size: int = 32
    device: str = "auto"
    pad_to_multiple_of: int | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> InferenceConfig:
        config = _from_params(cls, params, "evaluation.inference")
        if config.batch_size < 1:
            raise ValueError(
                f"evaluation.inference.batch_size must be positive, not {config.batch_size}"
            )
        return config


@dataclass(frozen=True)
class ScoringConfig:
    """Bootstrap and calibration settings of :func:`llm_finetuning.metrics.score_predictions`."""

    n_bootstrap: int = 1000
    confidence_level: float = 0.95
    calibration_bins: int = 10

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> ScoringConfig:
        return _from_params(cls, params, "evaluation.scoring")


@dataclass(frozen=True)
class ReportConfig:
    """Error analysis, length buckets and figure titles.

    Attributes:
        model_name: How figures and the comparison table name the evaluated model.
        top_k_mistakes: How many of the most confident mistakes to keep for review.
        length_buckets: Number of review-length buckets (equal-count quantiles of the
            review length in words) in the accuracy-by-length table and plot.
    """

    model_name: str = "fine-tuned model"
    top_k_mistakes: int = 50
    length_buckets: int = 5

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> ReportConfig:
        config = _from_params(cls, params, "evaluation.report")
        if config.top_k_mistakes < 1 or config.length_buckets < 1:
            raise ValueError(
                "evaluation.report.top_k_mistakes and length_buckets must be positive"
            )
        return config


@dataclass(frozen=True)
class TfidfLogRegConfig:
    """The TF-IDF + logistic regression baseline (scikit-learn's own parameter names).

    Attributes:
        ngram_range: Word n-gram sizes, ``[1, 2]`` for unigrams and bigrams.
        min_df: Ignore n-grams seen in fewer training reviews than this.
        max_features: Keep at most this many n-grams (``None``: all).
        sublinear_tf: Use ``1 + log(tf)``: long reviews do not dominate.
        C: Inverse regularisation strength of the logistic regression.
        max_iter: Solver iterations.
    """

    ngram_range: tuple[int, int] = (1, 2)
    min_df: int = 2
    max_features: int | None = None
    sublinear_tf: bool = True
    C: float = 4.0
    max_iter: int = 1000

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> TfidfLogRegConfig:
        params = dict(params or {})
        if "ngram_range" in params:
            params["ngram_range"] = tuple(params["ngram_range"])
        return _from_params(cls, params, "evaluation.baselines.tfidf_logreg")
