"""The typed ``data_processing`` block."""

import pytest

from llm_finetuning.params import ParamsError
from llm_finetuning.pipelines.data_processing.params import (
    DataProcessingParams,
    SamplingParams,
    SourceParams,
)


def test_the_block_needs_a_source_that_names_its_classes():
    with pytest.raises(ParamsError, match=r"data_processing\.source: Field required"):
        DataProcessingParams.model_validate({})
    block = DataProcessingParams.model_validate({"source": {"label_names": ["a", "b"]}})
    assert block.sampling == SamplingParams()
    assert block.source.class_names() == ["a", "b"]


def test_sizes_are_counts_or_all():
    assert SamplingParams.model_validate({"train_size": "all"}).train_size == "all"
    with pytest.raises(ParamsError, match="train_size: must be a count >= 0 or 'all'"):
        SamplingParams.model_validate({"train_size": True})


def test_label_lookup_maps_raw_labels_to_ids():
    source = SourceParams.model_validate({"label_mapping": {"neg": 0, "pos": 1}})
    assert source.label_lookup() == {"neg": 0, "pos": 1}
    assert source.class_names() == ["neg", "pos"]
