"""Each epoch's length-grouped order depends on the seed and the epoch alone."""

from __future__ import annotations

import torch

from llm_finetuning.pipelines.training.sampling import EpochSeededLengthGroupedSampler

LENGTHS = [((i * 37) % 50) + 1 for i in range(96)]


def order(seed: int, epoch: int) -> list[int]:
    sampler = EpochSeededLengthGroupedSampler(8, lengths=LENGTHS, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_the_order_of_an_epoch_is_the_same_whatever_came_before():
    uninterrupted = EpochSeededLengthGroupedSampler(8, lengths=LENGTHS, seed=3)
    orders = []
    for epoch in range(3):
        uninterrupted.set_epoch(epoch)
        torch.rand(1000)  # other consumers of the global random state (dropout)
        orders.append(list(uninterrupted))
    # A process resumed in epoch 2 with another global state draws the same order.
    torch.manual_seed(12345)
    assert order(3, 2) == orders[2]
    assert sorted(orders[2]) == list(range(len(LENGTHS)))


def test_epochs_and_seeds_give_different_orders():
    assert order(3, 0) != order(3, 1)
    assert order(3, 0) != order(4, 0)


def test_batches_hold_reviews_of_similar_length():
    indices = order(0, 0)
    batches = [indices[i : i + 8] for i in range(0, len(indices), 8)]
    spread = [max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in batches]
    assert sorted(spread)[len(spread) // 2] < 25  # the median batch is length-grouped
