"""Language-model pieces several tasks share: `predict`'s prompt completion (every causal-LM task) and
the Trainer that reports perplexity (causal and masked language models)."""
from __future__ import annotations

from typing import Any

from ...errors import ConfigError
from ..base import Job, Loaded


def perplexity_trainer_class() -> Any:
    """A Trainer whose evaluation also reports perplexity (causal and masked language models)."""
    from transformers import Trainer

    class CausalLMTrainer(Trainer):
        """A Trainer whose evaluation also reports perplexity = exp(mean loss)."""

        def evaluation_loop(self, *args: Any, **kwargs: Any):
            output = super().evaluation_loop(*args, **kwargs)
            from ...metrics import perplexity

            prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
            loss = output.metrics.get(f"{prefix}_loss")
            if loss is not None:
                output.metrics[f"{prefix}_perplexity"] = perplexity(loss)
            return output

    return CausalLMTrainer


def complete_prompts(job: Job, loaded: Loaded, inputs: list[str], max_new_tokens: int = 50, do_sample: bool = False,
                     temperature: float = 1.0, top_p: float = 1.0, num_beams: int = 1, seed: int = 0,
                     batch_size: int = 16, **_: Any) -> list[dict[str, Any]]:
    """`predict` of every causal-LM task: a continuation of each prompt, which begins a document
    ([{"input": prompt, "output": continuation}]), or the assistant's reply to each conversation (a
    list of messages: [{"input": its last message, "messages": [...], "output": reply}])."""
    from .chat import is_conversation, require_template

    if any(is_conversation(p) for p in inputs):
        require_template(loaded.processing)
    if temperature <= 0:
        raise ConfigError("--temperature must be above 0 (use --greedy for deterministic output)")
    if not 0 < top_p <= 1:
        raise ConfigError("--top-p must be in (0, 1]")
    texts, _ = job.family.complete(loaded, inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                   temperature=temperature, top_p=top_p, num_beams=num_beams, seed=seed,
                                   batch_size=batch_size)
    return [{"input": prompt[-1]["content"], "messages": prompt, "output": text.strip()} if is_conversation(prompt)
            else {"input": prompt, "output": text.strip()} for prompt, text in zip(inputs, texts)]
