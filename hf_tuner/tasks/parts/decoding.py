"""A GPT-2 decoding step cheaper than the model's forward, for THE sampling loop (`loops.sample`):
the same arithmetic and dropout calls on the model's own weights, without the forward's per-call
work. `loops.sample` checks it against the model's forward before relying on it.
"""
from __future__ import annotations

from typing import Any


def decodes_one_token(model: Any) -> bool:
    """Whether `OneTokenDecoder` applies to `model`: GPT-2's own LM (`GPT2LMHeadModel`, not a peft
    wrapper or a subclass), SDPA attention, fp32 weights, no cross-attention, and no mixed-precision
    wrapper around its forward (accelerate's `_original_forward`: that forward autocasts, the
    decoder would not)."""
    import torch

    config = model.config
    return (type(model).__name__ == "GPT2LMHeadModel" and config.model_type == "gpt2"
            and getattr(config, "_attn_implementation", None) == "sdpa" and not getattr(config, "add_cross_attention", False)
            and model.lm_head.weight.dtype == torch.float32 and "_original_forward" not in vars(model))


class OneTokenDecoder:
    """The cached decoding steps of a GPT-2 LM (`decodes_one_token`), one new token per row per
    step, as functional ops on the model's own weights: GPT2LMHeadModel.forward's arithmetic and its
    dropout calls in the same order and shapes (so one random state gives the same logits), without
    its per-call work (cache objects, mask building, output classes) and with the keys and values
    written into buffers sized for the whole completion instead of concatenated every step. 16
    completions of 24 tokens of the 2 x 128 tweet GPT-2 in train mode: see bench/micro_grpo.py.
    `loops.sample` checks it against the model's forward before relying on it."""

    def __init__(self, model: Any, cache: Any, attention_mask: Any, new_tokens: int):
        import torch

        base, layers = model.transformer, cache.layers
        batch, prompt = attention_mask.shape
        self.model, self.length = model, prompt
        self.keys, self.values = [], []
        for layer in layers[:len(base.h)]:
            for into, done in ((self.keys, layer.keys), (self.values, layer.values)):
                buffer = done.new_empty(*done.shape[:2], prompt + new_tokens, done.shape[-1])
                buffer[:, :, :prompt] = done
                into.append(buffer)
        # every position after the prompt is attended to (loops.sample pads finished rows in place)
        self.mask = torch.ones(batch, 1, 1, prompt + new_tokens, dtype=torch.bool, device=attention_mask.device)
        self.mask[:, 0, 0, :prompt] = attention_mask.bool()

    @staticmethod
    def fits(model: Any, cache: Any) -> bool:
        """Whether `cache` (the prompt pass's) holds every layer's keys and values as tensors."""
        layers = getattr(cache, "layers", None)
        return layers is not None and len(layers) >= len(model.transformer.h) and all(
            getattr(layer, "keys", None) is not None and getattr(layer, "values", None) is not None
            for layer in layers[:len(model.transformer.h)])

    def step(self, token: Any, position: Any) -> Any:
        """The next-token logits [batch, vocab] after `token` [batch] at `position` [batch, 1]."""
        import torch
        from torch.nn import functional as F

        model, base = self.model, self.model.transformer
        training, batch, width = model.training, token.shape[0], model.config.n_embd
        end = self.length = self.length + 1
        mask = self.mask[..., :end]
        hidden = F.embedding(token[:, None], base.wte.weight) + F.embedding(position, base.wpe.weight)
        hidden = F.dropout(hidden, base.drop.p, training)
        for block, keys, values in zip(base.h, self.keys, self.values):
            attention = block.attn
            x = F.layer_norm(hidden, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
            qkv = torch.addmm(attention.c_attn.bias, x.view(batch, width), attention.c_attn.weight)
            query, key, value = qkv.view(batch, 1, 3, attention.num_heads, attention.head_dim).permute(2, 0, 3, 1, 4)
            keys[:, :, end - 1:end], values[:, :, end - 1:end] = key, value
            out = F.scaled_dot_product_attention(query, keys[:, :, :end], values[:, :, :end], attn_mask=mask,
                                                 dropout_p=attention.attn_dropout.p if training else 0.0,
                                                 scale=attention.scaling)
            out = torch.addmm(attention.c_proj.bias, out.transpose(1, 2).reshape(batch, width), attention.c_proj.weight)
            hidden = hidden + F.dropout(out.view(batch, 1, width), attention.resid_dropout.p, training)
            x = F.layer_norm(hidden, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
            mlp = block.mlp
            x = torch.addmm(mlp.c_proj.bias, mlp.act(torch.addmm(mlp.c_fc.bias, x.view(batch, width), mlp.c_fc.weight)),
                            mlp.c_proj.weight)
            hidden = hidden + F.dropout(x.view(batch, 1, width), mlp.dropout.p, training)
        hidden = F.layer_norm(hidden, (width,), base.ln_f.weight, base.ln_f.bias, base.ln_f.eps)
        return F.linear(hidden.view(batch, width), model.lm_head.weight, model.lm_head.bias)
