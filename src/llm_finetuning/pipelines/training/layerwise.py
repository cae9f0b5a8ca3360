"""Layer-wise learning-rate decay (LLRD): lower layers of a pretrained model move less.

Sun et al. (2019, "How to Fine-Tune BERT for Text Classification?") and ULMFiT give
each layer ``decay`` times its upper neighbour's rate: general features near the input
change little, task features near the output adapt. Here the classification head (and
anything else above the last layer) takes the peak rate, the last layer ``decay`` times
it, and so on down to the embeddings. Depth is read from parameter names, which covers
BERT (``encoder.layer.3.``), GPT-2 (``transformer.h.3.``) and Llama
(``model.layers.3.``), with or without a LoRA wrapper. Embeddings sit below layer 0;
everything above the last layer (pooler, classification head, final norm) takes the
peak rate.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any

_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
_EMBEDDING = re.compile(r"embed|\.wte\.|\.wpe\.")


def parameter_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, ``i + 1`` for layer ``i``, ``num_layers + 1`` above the layers."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if _EMBEDDING.search(name):
        return 0
    return num_layers + 1


def layerwise_parameter_groups(
    named_parameters: Iterable[tuple[str, Any]],
    *,
    num_layers: int,
    learning_rate: float,
    decay: float,
    weight_decay: float,
    decay_names: Collection[str],
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: one per (depth, weight decay or not), each with its ``lr``.

    A parameter at depth ``d`` gets ``learning_rate * decay ** (num_layers + 1 - d)``;
    weight decay applies to the names in ``decay_names`` only (biases and norms are
    left out, as the Trainer does). Frozen parameters are left out.
    """
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        depth = parameter_depth(name, num_layers)
        decayed = name in decay_names
        group = groups.setdefault(
            (depth, decayed),
            {
                "params": [],
                "lr": learning_rate * decay ** (num_layers + 1 - depth),
                "weight_decay": weight_decay if decayed else 0.0,
            },
        )
        group["params"].append(parameter)
    # Top first: the Trainer logs the first group's rate, which is then the peak rate.
    return [groups[key] for key in sorted(groups, reverse=True)]
