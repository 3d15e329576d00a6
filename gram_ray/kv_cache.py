"""Reusing a computed key/value cache across transformers releases.

transformers 5.x renamed the cache that models return and take from ``past_key_values`` to
``cache`` (outputs, ``forward``, ``generate``); the old keyword warns on every call and leaves
``forward`` in 5.40. Releases before the rename (pyproject's floor is 4.56) know only the old
name. The scorer, the training module and reasoning's shared prefill all go through here.
"""

from __future__ import annotations

from functools import cache as once
from typing import Any

import torch

KeyValues = list[tuple[torch.Tensor, torch.Tensor]]  # (keys, values) per layer


@once
def name() -> str:
    """``cache`` where this transformers has the new name, else ``past_key_values``."""
    # Imported here: clients of the service import gram_ray without needing transformers.
    from transformers.modeling_outputs import BaseModelOutputWithPast

    return "cache" if "cache" in getattr(BaseModelOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


def returned(output: Any):
    """The cache a ``forward(..., use_cache=True)`` returned."""
    return getattr(output, name())


def argument(cache) -> dict[str, Any]:
    """The keyword that hands ``cache`` to a model's ``forward`` or ``generate``."""
    return {name(): cache}


def key_values(cache) -> KeyValues:
    """Per layer, the (keys, values) tensors of a returned ``DynamicCache``."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def broadcast(kv: KeyValues, rows: int, config) -> Any:
    """A cache holding the one-sequence ``kv`` for each of ``rows`` sequences (a view, no copy)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in kv],
                        config=config)
