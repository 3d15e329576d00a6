"""The two-row verdict head: logits of "A" and "B" from the last hidden state only.

A causal LM's head maps every position to the full vocabulary; GRAM needs two logits at one
position. Taking the decoder's last hidden state and multiplying by the two lm_head rows (in fp32)
gives exactly those two logits at a fraction of the cost and memory, for scoring and for training.
Model-specific logit transforms (Cohere's ``logit_scale``, Granite's ``logits_scaling``, Gemma's
``final_logit_softcapping``) are applied as the model's own forward would, because a softmax over two
tokens depends on them.
"""

from __future__ import annotations

from typing import Any

import torch


def unwrap(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected in it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_of(model: Any) -> Any:
    """The decoder stack (embeddings → final norm) of a causal LM, without its lm_head."""
    inner = unwrap(model)
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    if decoder is None or decoder is inner:
        decoder = getattr(inner, inner.base_model_prefix, None)
    if decoder is None:
        raise TypeError(f"cannot find the decoder of {type(inner).__name__}")
    return decoder


def verdict_rows(model: Any, token_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The lm_head rows (and bias entries) of ``token_ids``, with gradients flowing to the head."""
    head = unwrap(model).get_output_embeddings()
    ids = torch.tensor(token_ids, device=head.weight.device)
    weight = head.weight.index_select(0, ids)
    bias = head.bias.index_select(0, ids) if getattr(head, "bias", None) is not None else None
    return weight, bias


def apply_logit_transforms(logits: torch.Tensor, config: Any) -> torch.Tensor:
    """Apply the model's own final-logit scaling / soft-capping, as its forward does."""
    config = getattr(config, "text_config", None) or config
    scale = getattr(config, "logit_scale", None)  # Cohere: logits * scale
    if scale is not None:
        logits = logits * scale
    scaling = getattr(config, "logits_scaling", None)  # Granite: logits / scaling
    if scaling is not None:
        logits = logits / scaling
    cap = getattr(config, "final_logit_softcapping", None)  # Gemma 2/3: cap * tanh(logits / cap)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def verdict_logits(
    hidden_last: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, config: Any
) -> torch.Tensor:
    """``[N, H]`` last hidden states → ``[N, 2]`` fp32 verdict logits."""
    weight = weight.to(hidden_last.device)
    logits = hidden_last.float() @ weight.float().T
    if bias is not None:
        logits = logits + bias.to(hidden_last.device).float()
    return apply_logit_transforms(logits, config)


def last_token_hidden(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, L, H]`` right-padded hidden states → ``[B, H]`` at each row's last real token."""
    index = (lengths - 1).to(hidden.device)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def is_scalar_architecture(architectures: list[str]) -> bool:
    """The one rule for a discriminative reward model (a scalar head, e.g. the Bradley-Terry
    baseline) rather than a generative judge: a ``*ForSequenceClassification`` architecture."""
    return any(a.endswith("ForSequenceClassification") for a in architectures)


def is_scalar_head(model: Any) -> bool:
    """:func:`is_scalar_architecture` of a loaded model."""
    return is_scalar_architecture([type(unwrap(model)).__name__])


def scalar_rewards(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[B]`` fp32 rewards of a sequence classifier (num_labels=1) at each row's last real token.

    The last token comes from the lengths, not from pad-token detection: chat templates reuse the pad
    token (EOS) inside sequences.
    """
    inner = unwrap(model)
    hidden = getattr(inner, inner.base_model_prefix)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return inner.score(last_token_hidden(hidden, lengths)).squeeze(-1).float()
