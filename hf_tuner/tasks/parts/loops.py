"""THE generation loop and THE scoring loop: every task that generates text (`predict` of causal
LMs and seq2seq models, the held-out completions of GRPO / RLOO) or scores inputs with a model
(`predict` of classifiers, pairwise reward metrics, reward models as rewards) goes through these.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Iterator, Optional, Sequence


def left_pad(rows: list[list[int]], pad_id: int, device: Any = None) -> dict[str, Any]:
    """Token id rows -> `input_ids` / `attention_mask` padded on the left (a decoder continues from
    the right end of every row)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return {"input_ids": ids, "attention_mask": mask}


def generate(model: Any, inputs: Sequence[Any], encode: Callable[[list[Any]], dict[str, Any]], options: dict[str, Any],
             seed: int = 0, batch_size: int = 16) -> list[list[int]]:
    """The new token ids `model.generate` gives for each input, in batches of `batch_size`
    (`encode` turns a batch into model inputs). Sampling is seeded with `seed`; the caller's random
    state and the model's train/eval mode are restored afterwards, so generating during a run does
    not change its training."""
    import torch

    was_training = model.training
    model.eval()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    decoder_only = not getattr(model.config, "is_encoder_decoder", False)
    out: list[list[int]] = []
    try:
        for start in range(0, len(inputs), batch_size):
            enc = encode(list(inputs[start:start + batch_size]))
            with torch.no_grad():
                generated = model.generate(**enc, **options)
            if decoder_only:  # a decoder returns the prompt too
                generated = generated[:, enc["input_ids"].shape[1]:]
            out += generated.tolist()
    finally:
        torch.random.set_rng_state(state)
        model.train(was_training)
    return out


def score(model: Any, items: Sequence[Any], encode: Callable[[list[Any]], dict[str, Any]],
          batch_size: int = 32, output: Any = "logits", autocast: Any = None) -> Iterator[tuple[list[Any], Any]]:
    """(batch, float logits) for each batch of `items` put through `model` in eval mode without
    gradients (`encode` turns a batch into model inputs); the model's mode is restored afterwards.
    `output` names the model output to return (a tuple of names: a tuple of them, e.g. QA's
    start and end logits). `autocast`: a dtype (torch.bfloat16) the forward pass runs its matrix
    products in (torch.autocast on the model's device), or None for the model's own precision."""
    import contextlib

    import torch

    was_training = model.training
    model.eval()
    device_type = getattr(model.device, "type", "cpu")
    try:
        for start in range(0, len(items), batch_size):
            batch = list(items[start:start + batch_size])
            cast = torch.autocast(device_type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
            with torch.no_grad(), cast:
                out = model(**encode(batch))
            if isinstance(output, tuple):
                yield batch, tuple(getattr(out, name).float() for name in output)
            else:
                yield batch, getattr(out, output).float()
    finally:
        model.train(was_training)


# Generation settings under which `sample` draws from the same distribution as `model.generate`:
# each name's value must be one of the neutral ones (no logits processor, stopping rule or cache of
# its own; transformers' GenerationMixin._get_logits_processor / _get_stopping_criteria add them).
NEUTRAL_GENERATION = {
    "num_beams": (None, 1), "num_return_sequences": (None, 1), "top_k": (None, 0), "top_p": (None, 1.0),
    "min_p": (None,), "top_h": (None,), "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0), "repetition_penalty": (None, 1.0), "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0), "encoder_no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
    "sequence_bias": (None,), "guidance_scale": (None, 1.0), "min_length": (None, 0), "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "exponential_decay_length_penalty": (None,),
    "suppress_tokens": (None,), "begin_suppress_tokens": (None,), "watermarking_config": (None,),
    "max_time": (None,), "stop_strings": (None,), "cache_implementation": (None,), "prompt_lookup_num_tokens": (None,),
    "assistant_early_exit": (None,), "return_dict_in_generate": (None, False), "renormalize_logits": (None, False),
}


def plain_sampling(config: Any) -> bool:
    """Whether a GenerationConfig asks for nothing but temperature sampling up to `max_new_tokens`
    (stopping at its eos tokens): the case `sample` handles."""
    return (bool(config.do_sample) and (config.temperature or 0) > 0 and config.max_new_tokens is not None
            and all(getattr(config, name, None) in neutral for name, neutral in NEUTRAL_GENERATION.items()))


def sample(model: Any, input_ids: Any, attention_mask: Any, max_new_tokens: int, temperature: float = 1.0,
           eos_token_ids: Sequence[int] = (), pad_token_id: int = 0, draw: Optional[Callable[[Any], Any]] = None) -> Any:
    """Temperature sampling from a decoder-only `model` with a KV cache: what `model.generate`
    returns for `do_sample=True` and no other logits processor (left-padded prompts followed by up
    to `max_new_tokens` tokens; a row that has sampled an eos token is padded with `pad_token_id`;
    it stops early once every row has), with less work per token.

    `draw(probs) -> token ids` picks one token per row. The default inverts the cumulative
    distribution at one uniform number per row, exactly the softmax distribution, at a twentieth
    of the cost of `torch.multinomial` on a CPU (0.04-0.06 vs 0.9-1.1 ms for 16 x 2,000 tokens,
    bench/micro_grpo.py); it consumes the random stream differently, so a seed gives other (equally
    likely) completions than `generate`. With `draw=lambda p: torch.multinomial(p, 1)[:, 0]` the
    tokens are generate's own, which the tests check.

    A GPT-2 LM (`decoding.decodes_one_token`) decodes through `decoding.OneTokenDecoder` once its
    first step has given the model's own logits with the same random state (within 1e-5 of the
    largest logit); the check runs once per model, and a model it fails keeps its own forward."""
    import inspect

    import torch

    draw = draw or inverse_cdf
    accepts = inspect.signature(getattr(model, "get_base_model", lambda: model)().forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
    positions = "position_ids" in accepts
    cache = "cache" if "cache" in accepts else "past_key_values"  # renamed in transformers 5.2x
    # SDPA takes a boolean [batch, 1, 1, keys] mask as it is: one token's step skips building the
    # causal mask (about 10% of a step of the 2x128 tweet GPT-2); other attentions want their own
    sdpa = getattr(getattr(model, "config", None), "_attn_implementation", None) == "sdpa"
    with torch.no_grad():  # as model.generate
        mask = attention_mask
        pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
        out = model(input_ids=input_ids, attention_mask=mask, use_cache=True, **extra,
                    **({"position_ids": pos} if positions else {}))
        eos = torch.tensor(list(eos_token_ids), device=input_ids.device)
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        last = pos[:, -1:]
        decoder = one_token_decoder(model, getattr(out, cache, None), mask, max_new_tokens)
        logits = out.logits[:, -1, :]
        tokens = []
        for step in range(max_new_tokens):
            probs = (logits.float() / temperature).softmax(-1)
            token = draw(probs).masked_fill(finished, pad_token_id)
            tokens.append(token)
            finished |= torch.isin(token, eos)
            if step == max_new_tokens - 1 or bool(finished.all()):
                break
            last = last + 1
            if decoder is not None and DECODES.get(model):
                logits = decoder.step(token, last)
                continue
            mine = None
            if decoder is not None:
                device = input_ids.device
                with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device],
                                           device_type="cuda" if device.type == "cpu" else device.type):
                    mine = decoder.step(token, last)  # with the random state the model's forward below starts from
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
            out = model(input_ids=token[:, None], attention_mask=mask.bool()[:, None, None, :] if sdpa else mask, use_cache=True,
                        **{cache: getattr(out, cache)},
                        **({"position_ids": last} if positions else {}))
            logits = out.logits[:, -1, :]
            if mine is not None:
                tolerance = 1e-5 * max(1.0, float(logits.abs().max()))  # fp32 rounding
                DECODES[model] = agrees = float((mine - logits).abs().max()) <= tolerance
                decoder = decoder if agrees else None
        return torch.cat([input_ids, torch.stack(tokens, dim=1)], dim=1)


# Per model: whether its `decoding.OneTokenDecoder` gave the model's own logits (the first decoding
# step after the prompt is run both ways with one random state; later steps use the decoder alone).
DECODES: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def one_token_decoder(model: Any, cache: Any, attention_mask: Any, new_tokens: int) -> Any:
    """A `decoding.OneTokenDecoder` continuing from the prompt pass's `cache`, for a model it
    applies to and has not disagreed with; else None (the model's own forward decodes)."""
    from .decoding import OneTokenDecoder, decodes_one_token

    if new_tokens < 2 or DECODES.get(model) is False or not decodes_one_token(model) or not OneTokenDecoder.fits(model, cache):
        return None
    return OneTokenDecoder(model, cache, attention_mask, new_tokens)


def inverse_cdf(probs: Any) -> Any:
    """One token per row of `probs` (rows summing to 1), drawn by inverting the cumulative sum at a
    uniform number: the first index whose cumulative probability exceeds it."""
    import torch

    cumulative = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, device=probs.device, dtype=cumulative.dtype) * cumulative[:, -1:]
    return torch.searchsorted(cumulative, u, right=True).clamp_(max=probs.shape[-1] - 1)[:, 0]
