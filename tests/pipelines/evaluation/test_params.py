"""The typed ``evaluation`` block."""

import pytest

from llm_finetuning.params import ParamsError
from llm_finetuning.pipelines.evaluation.params import EvaluationParams


def test_defaults_and_named_errors():
    block = EvaluationParams.model_validate({"report": {"top_k_mistakes": 3}})
    assert block.report.top_k_mistakes == 3
    assert block.baselines.tfidf_logreg.ngram_range == (1, 2)
    with pytest.raises(
        ParamsError, match=r"evaluation\.baselines\.tfidf_logreg\.ngram_range: must be"
    ):
        EvaluationParams.model_validate(
            {"baselines": {"tfidf_logreg": {"ngram_range": [2, 1]}}}
        )
    with pytest.raises(ParamsError, match=r"evaluation\.scorng: unknown key"):
        EvaluationParams.model_validate({"scorng": {}})
