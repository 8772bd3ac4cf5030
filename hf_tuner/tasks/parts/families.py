"""The text model families several tasks share: sequence classifiers (text classification, reward
models) and causal LMs (causal-lm, dpo, grpo, rloo). Seq2seq and ViT families live with their task.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Optional

from ...data import Splits
from ..base import Family, Job, Loaded, as_text, ensure_pad_token, fit_tokenizer
from .chat import is_conversation, render
from .loops import generate, left_pad, score

ENCODER_TYPES = ("bert", "roberta", "distilbert", "electra", "deberta", "deberta-v2", "xlm-roberta", "camembert")


@dataclass(frozen=True, kw_only=True)
class TextHeadFamily(Family):
    """A text model (BERT or GPT-2 family) with a task head: sequence classification (the default;
    text classification, reward models), token classification or extractive QA. The head's size
    comes from the objective (labels, one reward output); GPT-2 pads with eos. peft's task type
    trains the head fully next to the adapter (modules_to_save)."""

    auto_model: str = "AutoModelForSequenceClassification"
    peft_task_type: Optional[str] = "SEQ_CLS"

    def tokenizer_kind(self, job: Job) -> str:
        scratch = job.cfg.model.from_scratch
        return "causal" if scratch is not None and scratch.model_type not in ENCODER_TYPES else "encoder"

    def fix_processing(self, processing: Any) -> Any:
        return ensure_pad_token(processing)

    def config_kwargs(self, job: Job, splits: Splits, processing: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"pad_token_id": processing.pad_token_id}
        if job.cfg.model.from_scratch is not None:
            kwargs["vocab_size"] = len(processing)
        return kwargs

    def fix_up(self, job: Job, model: Any, processing: Any) -> Any:
        return fit_tokenizer(model, processing)

    def scores(self, model: Any, tokenizer: Any, texts: list[str], label_index: Optional[int] = None,
               batch_size: int = 32, max_length: int = 512, autocast: Any = None) -> list[float]:
        """The model's score of each text: logit 0 (a reward model) or the probability of
        `label_index` (`label_scores` of `logits`)."""
        return label_scores(self.logits(model, tokenizer, texts, batch_size, max_length, autocast), label_index)

    def logits(self, model: Any, tokenizer: Any, texts: list[str], batch_size: int = 32, max_length: int = 512,
               autocast: Any = None) -> Any:
        """The model's float logits of each text, [texts, outputs]. Texts are tokenised with the
        model's own tokenizer and special tokens. `autocast`: see `loops.score` (a reward scored in bf16)."""
        import torch

        # a tokenizer trained from scratch has no model_max_length (1e30): the model's positions bound it too
        positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length, positions or max_length)

        def encode(batch: list[str]) -> dict[str, Any]:
            enc = tokenizer(batch, truncation=True, max_length=limit, padding=True, return_tensors="pt")
            return {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

        return torch.cat([logits for _, logits in score(model, texts, encode, batch_size, autocast=autocast)])


def label_scores(logits: Any, label_index: Optional[int] = None) -> list[float]:
    """Logit 0 of each row (a reward model), or the probability of `label_index` (a classifier)."""
    return (logits[:, 0] if label_index is None else logits.softmax(-1)[:, label_index]).tolist()


# Encoders whose *ForSequenceClassification head reads the first token's hidden state only (BERT's
# pooler, RoBERTa's and ELECTRA's classification heads); their layers share BERT's module names.
FIRST_TOKEN_HEADS = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def trims_to_first_token(model: Any) -> bool:
    """Whether `first_token_last_layer` applies to `model`: a sequence classifier of
    FIRST_TOKEN_HEADS, an encoder only, SDPA or eager attention, its last layer built as BERT's."""
    config = model.config
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    if (config.model_type not in FIRST_TOKEN_HEADS or not type(model).__name__.endswith("ForSequenceClassification")
            or getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False)
            or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager") or not layers):
        return False
    last = layers[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    return (all(hasattr(attention, name) for name in ("query", "key", "value", "attention_head_size", "scaling"))
            and all(hasattr(last, name) for name in ("intermediate", "output")) and hasattr(last.attention, "output"))


@contextmanager
def first_token_last_layer(model: Any) -> Iterator[None]:
    """Within the block, `model`'s last encoder layer computes the first token's output only (its
    keys and values still from every token): the rest of that layer's work feeds nothing the head
    reads. The quickstart MiniLM scores 16 completions of a GRPO run 9% faster (76.6 vs 84.4 ms), each
    probability within 1.2e-7 (bench/micro_grpo.py). Only for models `trims_to_first_token` accepts."""
    layers = model.base_model.encoder.layer
    last = layers[-1]
    layers[-1] = first_token_layer()(last)
    try:
        yield
    finally:
        layers[-1] = last


@lru_cache(maxsize=None)
def first_token_layer() -> Any:
    """The module class standing in for a BERT-style layer in `first_token_last_layer` (built on
    first use: torch is imported lazily)."""
    import torch

    class FirstTokenLayer(torch.nn.Module):
        """BERT's layer (self-attention, its output, the feed-forward part) for the first query only."""

        def __init__(self, layer: Any):
            super().__init__()
            self.layer = layer

        def forward(self, hidden_states: Any, attention_mask: Any = None, *args: Any, **kwargs: Any) -> Any:
            heads, first = self.layer.attention.self, hidden_states[:, :1]
            batch, length, _ = hidden_states.shape

            def split(x: Any, n: int) -> Any:
                return x.view(batch, n, -1, heads.attention_head_size).transpose(1, 2)

            mask = attention_mask[:, :, :1] if attention_mask is not None else None  # [batch, 1, queries, keys]
            context = torch.nn.functional.scaled_dot_product_attention(
                split(heads.query(first), 1), split(heads.key(hidden_states), length),
                split(heads.value(hidden_states), length), attn_mask=mask, scale=heads.scaling)
            attended = self.layer.attention.output(context.transpose(1, 2).reshape(batch, 1, -1), first)
            return self.layer.output(self.layer.intermediate(attended), attended)

    return FirstTokenLayer


@dataclass(frozen=True, kw_only=True)
class CausalLMFamily(Family):
    """`AutoModelForCausalLM` (GPT-2, Llama, ...): a pad token (eos, or a new `<|endoftext|>`),
    embeddings grown to the tokenizer, positions checked against the data, and generation."""

    auto_model: str = "AutoModelForCausalLM"
    peft_task_type: Optional[str] = "CAUSAL_LM"

    def fix_processing(self, processing: Any) -> Any:
        return ensure_pad_token(processing, add_eos=True)

    def config_kwargs(self, job: Job, splits: Splits, processing: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"pad_token_id": processing.pad_token_id}
        if job.cfg.model.from_scratch is not None:
            kwargs.update(vocab_size=len(processing), bos_token_id=processing.bos_token_id,
                          eos_token_id=processing.eos_token_id)
        return kwargs

    def fix_up(self, job: Job, model: Any, processing: Any) -> Any:
        config = model.config
        positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        if positions:
            job.data.check_positions(job, positions)
        return fit_tokenizer(model, processing, generation=True)

    def complete(self, loaded: Loaded, prompts: list[Any], max_new_tokens: int = 50, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: Optional[int] = None, num_beams: int = 1,
                 repetition_penalty: float = 1.0, seed: int = 0, batch_size: int = 16,
                 document_start: bool = True) -> tuple[list[str], list[int]]:
        """Continuations of `prompts` and their token counts up to and including eos. A text prompt
        with `document_start` begins a document (the bos token in front, as training saw documents);
        else it is tokenised as TRL samples it. A conversation (a list of messages) is rendered with the
        tokenizer's chat template and its generation prompt, so the continuation is the assistant's
        reply (without a template: its messages' text)."""
        tokenizer, model = loaded.processing, loaded.model
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        eos = tokenizer.eos_token_id

        chat = bool(getattr(tokenizer, "chat_template", None))

        def encode(batch: list[Any]) -> dict[str, Any]:
            texts = [as_text(p) for p in batch]
            rows = encode_starts(tokenizer, texts) if document_start else tokenizer(texts)["input_ids"]
            for i, p in enumerate(batch):
                if chat and is_conversation(p):
                    rows[i] = tokenizer(render(tokenizer, p, generation_prompt=True), add_special_tokens=False)["input_ids"]
            return left_pad([r or [start if document_start else eos] for r in rows], tokenizer.pad_token_id, model.device)

        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample,
                                   "pad_token_id": tokenizer.pad_token_id, "eos_token_id": eos}
        if do_sample:
            options.update(temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty)
        texts, lengths = [], []
        for row in generate(model, prompts, encode, options, seed, batch_size):
            n = row.index(eos) + 1 if eos in row else len(row)
            lengths.append(n)
            texts.append(tokenizer.decode(row[:n], skip_special_tokens=True))
        return texts, lengths


def encode_starts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of texts that begin a document: the tokenizer's own special tokens, and the bos
    token in front where the tokenizer adds none (GPT-2's `<|endoftext|>`), so that the first
    words of a document are learned (and generated from an empty prompt) in their own context."""
    bos = tokenizer.bos_token_id
    rows = tokenizer(texts)["input_ids"]
    if bos is None:
        return rows
    return [ids if ids[:1] == [bos] else [bos] + ids for ids in rows]
