"""THE generation loop and THE scoring loop: every task that generates text (`predict` of causal
LMs and seq2seq models, the held-out completions of GRPO / RLOO) or scores inputs with a model
(`predict` of classifiers, pairwise reward metrics, reward models as rewards) goes through these.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence


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
