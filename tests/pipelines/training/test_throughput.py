"""FLOP accounting checked against a model counted by hand, and impossible MFUs."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from llm_finetuning.models import parameter_counts
from llm_finetuning.pipelines.training.throughput import (
    BatchStats,
    checked_mfu,
    training_flops,
)

# One GPT-2 block of width 8 (MLP 32), vocabulary 10, 16 positions, 2 classes.
WIDTH, VOCAB, POSITIONS = 8, 10, 16
BY_HAND_NON_EMBEDDING = (
    2 * WIDTH  # ln_1
    + (WIDTH * 3 * WIDTH + 3 * WIDTH)  # attention c_attn
    + (WIDTH * WIDTH + WIDTH)  # attention c_proj
    + 2 * WIDTH  # ln_2
    + (WIDTH * 4 * WIDTH + 4 * WIDTH)  # mlp c_fc
    + (4 * WIDTH * WIDTH + WIDTH)  # mlp c_proj
    + 2 * WIDTH  # ln_f
    + WIDTH * 2  # score head, no bias
)
BY_HAND_EMBEDDING = VOCAB * WIDTH + POSITIONS * WIDTH


def tiny_gpt2() -> torch.nn.Module:
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=POSITIONS, n_embd=WIDTH, n_layer=1, n_head=2
    )
    config.num_labels = 2
    config.pad_token_id = 0
    return GPT2ForSequenceClassification(config)


def two_reviews() -> BatchStats:
    stats = BatchStats()
    stats.add(torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))  # 3 and 5 tokens
    return stats


def test_parameter_counts_leave_the_embeddings_out_of_the_matmul_counts():
    counts = parameter_counts(tiny_gpt2())
    assert counts == {
        "total": BY_HAND_NON_EMBEDDING + BY_HAND_EMBEDDING,
        "trainable": BY_HAND_NON_EMBEDDING + BY_HAND_EMBEDDING,
        "non_embedding": BY_HAND_NON_EMBEDDING,
        "trainable_non_embedding": BY_HAND_NON_EMBEDDING,
    }


def test_full_fine_tuning_costs_6n_per_token_plus_attention():
    model = tiny_gpt2()
    flops = training_flops(two_reviews(), parameter_counts(model), 1, WIDTH)
    # 8 real tokens; attention 12 * layers * width * (3^2 + 5^2).
    assert flops == 6 * BY_HAND_NON_EMBEDDING * 8 + 12 * 1 * WIDTH * (9 + 25)


def test_frozen_weights_cost_no_weight_gradient():
    model = tiny_gpt2()
    for name, weight in model.named_parameters():
        weight.requires_grad = name.startswith("score")  # only the head trains
    flops = training_flops(two_reviews(), parameter_counts(model), 1, WIDTH)
    head = WIDTH * 2
    expected = (4 * BY_HAND_NON_EMBEDDING + 2 * head) * 8 + 12 * WIDTH * 34
    assert flops == expected


def test_an_mfu_above_the_peak_is_an_error_not_a_result():
    assert checked_mfu(0.42) == 0.42
    assert checked_mfu(None) is None
    with pytest.raises(ValueError, match="above 100%"):
        checked_mfu(1.017)
