"""The text model families several tasks share: sequence classifiers (text classification, reward
models) and causal LMs (causal-lm, dpo, grpo, rloo). Seq2seq and ViT families live with their task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..data import Splits
from .base import Family, Job, Loaded, as_text, ensure_pad_token, fit_tokenizer
from .loops import generate, left_pad, score

ENCODER_TYPES = ("bert", "roberta", "distilbert", "electra", "deberta", "deberta-v2", "xlm-roberta", "camembert")


@dataclass(frozen=True)
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
        `label_index`. Texts are tokenised with the model's own tokenizer and special tokens.
        `autocast`: see `loops.score` (a reward scored in bf16)."""
        # a tokenizer trained from scratch has no model_max_length (1e30): the model's positions bound it too
        positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length, positions or max_length)

        def encode(batch: list[str]) -> dict[str, Any]:
            enc = tokenizer(batch, truncation=True, max_length=limit, padding=True, return_tensors="pt")
            return {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

        out: list[float] = []
        for _, logits in score(model, texts, encode, batch_size, autocast=autocast):
            out += (logits[:, 0] if label_index is None else logits.softmax(-1)[:, label_index]).tolist()
        return out


class CausalLMFamily(Family):
    """`AutoModelForCausalLM` (GPT-2, Llama, ...): a pad token (eos, or a new `<|endoftext|>`),
    embeddings grown to the tokenizer, positions checked against the data, and generation."""

    auto_model = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"

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
        """Continuations of `prompts` (texts, or conversational messages as their text) and their
        token counts up to and including eos. `document_start`: a prompt begins a document (the bos
        token in front, as training saw documents); else it is tokenised as TRL samples it."""
        tokenizer, model = loaded.processing, loaded.model
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        eos = tokenizer.eos_token_id

        def encode(batch: list[Any]) -> dict[str, Any]:
            texts = [as_text(p) for p in batch]
            rows = encode_starts(tokenizer, texts) if document_start else tokenizer(texts)["input_ids"]
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
