"""Layer-wise learning-rate decay: depths from names, rates per group, used by ``fit``."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from llm_finetuning.pipelines.training.layerwise import (
    layerwise_parameter_groups,
    parameter_depth,
)
from llm_finetuning.pipelines.training.params import TrainingParams
from llm_finetuning.pipelines.training.trainer import fit

from .conftest import LABEL_NAMES


@pytest.mark.parametrize(
    ("name", "depth"),
    [
        ("bert.embeddings.word_embeddings.weight", 0),
        ("bert.encoder.layer.0.attention.self.query.weight", 1),
        ("bert.encoder.layer.5.output.LayerNorm.bias", 6),
        ("bert.pooler.dense.weight", 7),
        ("classifier.weight", 7),
        ("transformer.wte.weight", 0),
        ("transformer.h.2.mlp.c_fc.weight", 3),
        ("transformer.ln_f.weight", 7),
        ("base_model.model.model.layers.4.self_attn.q_proj.lora_A.default.weight", 5),
        ("score.weight", 7),
    ],
)
def test_depth_is_read_from_the_parameter_name(name, depth):
    assert parameter_depth(name, num_layers=6) == depth


def _parameter(requires_grad: bool = True) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.zeros(1), requires_grad=requires_grad)


def test_each_layer_down_learns_decay_times_slower_and_norms_skip_weight_decay():
    named = [
        ("bert.embeddings.word_embeddings.weight", _parameter()),
        ("bert.encoder.layer.0.dense.weight", _parameter()),
        ("bert.encoder.layer.0.dense.bias", _parameter()),
        ("bert.encoder.layer.1.dense.weight", _parameter()),
        ("classifier.weight", _parameter()),
        ("frozen.weight", _parameter(requires_grad=False)),
    ]
    groups = layerwise_parameter_groups(
        named,
        num_layers=2,
        learning_rate=1e-4,
        decay=0.5,
        weight_decay=0.01,
        decay_names={name for name, _ in named if name.endswith("weight")},
    )
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    p = dict(named)
    assert rate[id(p["classifier.weight"])] == pytest.approx(1e-4)
    assert rate[id(p["bert.encoder.layer.1.dense.weight"])] == pytest.approx(5e-5)
    assert rate[id(p["bert.encoder.layer.0.dense.weight"])] == pytest.approx(2.5e-5)
    assert rate[id(p["bert.encoder.layer.0.dense.bias"])] == pytest.approx(2.5e-5)
    assert rate[id(p["bert.embeddings.word_embeddings.weight"])] == pytest.approx(
        1.25e-5
    )
    assert wd[id(p["bert.encoder.layer.0.dense.bias"])] == 0.0
    assert wd[id(p["bert.encoder.layer.0.dense.weight"])] == 0.01
    assert id(p["frozen.weight"]) not in rate  # frozen: not optimised
    assert groups[0]["lr"] == pytest.approx(1e-4)  # the Trainer logs group 0's rate


class _OptimizerRates(TrainerCallback):
    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.rates = sorted({group["lr"] for group in optimizer.param_groups})
        self.n_params = sum(len(group["params"]) for group in optimizer.param_groups)


def test_fit_gives_lower_layers_lower_rates(
    tokenized_reviews, model_params, training_params, runtime_params
):
    model_params["architecture"]["n_layer"] = 2
    params = training_params(
        max_steps=1, layerwise_lr_decay=0.5, warmup=0, evaluation={"strategy": "no"}
    )
    seen = _OptimizerRates()
    classifier, metrics = fit(
        tokenized_reviews,
        LABEL_NAMES,
        model_params,
        params,
        runtime_params,
        callbacks=[seen],
    )
    peak = params["learning_rate"]
    # Embeddings, layers 0 and 1, and the head/final norm: four rates, halving down.
    assert seen.rates == pytest.approx([peak / 8, peak / 4, peak / 2, peak])
    trainable = [p for p in classifier.model.parameters() if p.requires_grad]
    assert seen.n_params == len(trainable)
    assert metrics["history"]["train"][0]["learning_rate"] == pytest.approx(peak)


def test_decay_must_be_in_zero_one():
    TrainingParams.model_validate({"layerwise_lr_decay": 0.9})
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="layerwise_lr_decay"):
            TrainingParams.model_validate({"layerwise_lr_decay": bad})
