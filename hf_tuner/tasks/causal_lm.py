"""Task `causal-lm`: GPT-2-family language models on plain text or prompt/completion pairs.

Each document is tokenised as the tokenizer does by default, starts with the bos token (GPT-2's
`<|endoftext|>`, added where the tokenizer adds none), ends with the eos token and is truncated to
`data.max_length`. Plain text trains on every token; prompt/completion data trains on
the completion only (prompt labels are -100). Batches are padded dynamically, or, with
`data.packing: true`, the training documents are concatenated and cut into blocks of
`data.max_length` tokens. A packed block carries `position_ids` that restart at every document, so
(i) no position is trained to predict the first token of the next document, (ii) GPT-2's position
embeddings see each document from position 0, and (iii) transformers' attention masks keep each
document to itself (it detects packed sequences from the position ids when no attention mask is
given). Packed and unpacked runs therefore see the same tokens; only a document cut by a block
boundary loses its context there. Validation data is never packed, so perplexity is comparable
between packed and unpacked runs. The metric is perplexity = exp(mean validation loss).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import Field

from ..config import DataConfig
from ..data import Splits, finish_splits, load_splits, require_columns, require_text, tokenizer_fingerprint
from ..errors import ConfigError
from .base import CardInfo, Loaded, Task

IGNORE = -100  # the label torch's cross-entropy skips
TOKENISATION_VERSION = 1  # part of the cache key: bump when `document_tokenizer` changes what it writes


def pack_documents(input_ids: list[list[int]], labels: list[list[int]], block_size: int) -> dict[str, list[list[int]]]:
    """Concatenate tokenised documents and cut them into blocks of `block_size` tokens.

    Every token is kept, in order (the last block may be shorter). In each block the label of a
    document's first token is -100 (nothing learns to predict a new document from the previous
    one) and `position_ids` restart at 0 at every document start and every block start.
    """
    blocks: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    ids: list[int] = []
    labs: list[int] = []
    pos: list[int] = []

    def flush() -> None:
        if ids:
            blocks["input_ids"].append(list(ids))
            blocks["labels"].append(list(labs))
            blocks["position_ids"].append(list(pos))
            ids.clear()
            labs.clear()
            pos.clear()

    for doc_ids, doc_labels in zip(input_ids, labels):
        for i, (token, label) in enumerate(zip(doc_ids, doc_labels)):
            if len(ids) == block_size:
                flush()
            starts_segment = i == 0 or not pos
            pos.append(0 if starts_segment else pos[-1] + 1)
            ids.append(token)
            labs.append(IGNORE if i == 0 else label)
    flush()
    return blocks


class CausalLMCollator:
    """Pads a batch to its longest row: input ids with the pad token, labels with -100.

    Unpacked rows get an attention mask. Packed rows (which carry `position_ids`) get none: the
    padding becomes one more segment whose positions restart at 0, so transformers builds a
    block-diagonal causal mask from the position ids and no real token attends to another document.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        packed = "position_ids" in features[0]
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        batch["position_ids" if packed else "attention_mask"] = []
        for f in features:
            n = len(f["input_ids"])
            gap = width - n
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_token_id] * gap)
            batch["labels"].append(list(f["labels"]) + [IGNORE] * gap)
            if packed:
                batch["position_ids"].append(list(f["position_ids"]) + list(range(gap)))
            else:
                batch["attention_mask"].append([1] * n + [0] * gap)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def _causal_lm_trainer_class() -> Any:
    from transformers import Trainer

    class CausalLMTrainer(Trainer):
        """A Trainer whose evaluation also reports perplexity = exp(mean loss)."""

        def evaluation_loop(self, *args: Any, **kwargs: Any):
            output = super().evaluation_loop(*args, **kwargs)
            from ..metrics import perplexity

            prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
            loss = output.metrics.get(f"{prefix}_loss")
            if loss is not None:
                output.metrics[f"{prefix}_perplexity"] = perplexity(loss)
            return output

    return CausalLMTrainer


class CausalLMData(DataConfig):
    """`data:` of causal LM training: plain text, or prompt/completion pairs; optional packing."""

    text_column: str = "text"
    prompt_column: Optional[str] = None
    completion_column: Optional[str] = None
    max_length: int = Field(128, ge=8)
    packing: bool = False


class CausalLM(Task):
    name = "causal-lm"
    data_schema = CausalLMData
    card = CardInfo("text-generation", "Text Generation")
    auto_model = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    tokenizer_kind = "causal"
    primary_metric = "perplexity"
    greater_is_better = False
    harness = True

    @classmethod
    def check_config(cls, cfg) -> list[str]:
        problems = super().check_config(cfg)
        d = cfg.data
        if bool(d.prompt_column) != bool(d.completion_column):
            problems.append("prompt/completion data needs both data.prompt_column and data.completion_column "
                            "(or neither, to train on data.text_column)")
        if d.packing and (cfg.training.model_extra or {}).get("use_cache"):
            # transformers only keeps packed documents apart when no KV cache is built
            problems.append("data.packing needs training.use_cache=false (the default): remove training.use_cache")
        return problems

    # ---- data ------------------------------------------------------------------------------
    def prompt_completion(self) -> bool:
        """True for prompt/completion data, False for plain text (check_config wants both or neither)."""
        return bool(self.cfg.data.prompt_column)

    def text_columns(self) -> list[str]:
        d = self.cfg.data
        return [d.prompt_column, d.completion_column] if self.prompt_completion() else [d.text_column]

    def load_data(self) -> Splits:
        d = self.cfg.data
        columns = self.text_columns()
        keys = ["prompt_column", "completion_column"] if self.prompt_completion() else ["text_column"]
        splits = load_splits(d)
        for name, ds in splits.items():
            require_columns(ds, columns, name, splits.sources[name], keys)
        splits = finish_splits(splits, d, self.cfg.training.seed)
        for name, ds in splits.items():
            for col in columns:
                require_text(ds, col, name)
        return splits

    def training_texts(self, splits: Splits) -> Iterator[str]:
        for col in self.text_columns():
            yield from (str(t) for t in splits.train[col])

    # ---- tokenizer and model -----------------------------------------------------------------
    def load_processing(self, splits: Splits) -> Any:
        tokenizer = super().load_processing(splits)
        return ensure_pad_token(tokenizer)

    def model_config_kwargs(self, splits: Splits, processing: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"pad_token_id": processing.pad_token_id}
        if self.cfg.model.from_scratch is not None:
            kwargs.update(vocab_size=len(processing), bos_token_id=processing.bos_token_id,
                          eos_token_id=processing.eos_token_id)
        return kwargs

    def check_positions(self, positions: int) -> None:
        """Fail before training when the sequences would not fit the model's position table."""
        if self.cfg.data.max_length > positions:
            raise ConfigError(f"data.max_length={self.cfg.data.max_length} is longer than the model's {positions} "
                              "positions: lower data.max_length")

    def after_model_load(self, model: Any, processing: Any) -> Any:
        config = model.config
        positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        if positions:
            self.check_positions(positions)
        if len(processing) > model.get_input_embeddings().num_embeddings:  # a pad/eos token was added
            model.resize_token_embeddings(len(processing))
        generation = getattr(model, "generation_config", None)
        if generation is not None:
            generation.pad_token_id = processing.pad_token_id
            generation.eos_token_id = processing.eos_token_id
        return model

    # ---- preprocessing ---------------------------------------------------------------------------
    def preprocess(self, splits: Splits, processing: Any) -> Splits:
        d = self.cfg.data
        tokenize = document_tokenizer(processing, d.max_length, d.text_column, d.prompt_column, d.completion_column)
        key = (f"causal-lm/v{TOKENISATION_VERSION}|{tokenizer_fingerprint(processing)}|{d.text_column}|{d.prompt_column}|"
               f"{d.completion_column}|{d.max_length}|eos={processing.eos_token_id}")
        features = self.tokenise(splits, tokenize, key)
        for name, ds in splits.items():
            out = getattr(features, name)
            if len(out) == 0:
                from ..errors import DataError

                raise DataError(f"no {name} row has a token to train on within data.max_length={d.max_length}: "
                                "raise data.max_length or shorten the prompts")
            if len(out) < len(ds):
                features.notes.append(f"{name}: dropped {len(ds) - len(out)} rows with no token to learn within data.max_length")
        if d.packing:
            features.train = pack_dataset(features.train, d.max_length)
        return features

    def data_collator(self, processing: Any) -> Any:
        return CausalLMCollator(processing.pad_token_id)

    # ---- training ------------------------------------------------------------------------------
    def token_lengths(self, rows: Any, processing: Any) -> list[Any]:
        from ..preflight import Lengths

        d = self.cfg.data
        whole = document_tokenizer(processing, 10 ** 9, d.text_column, d.prompt_column, d.completion_column)(rows[:])
        return [Lengths("prompt+completion" if d.prompt_column else d.text_column, [len(x) for x in whole["input_ids"]],
                        d.max_length)]

    def memory_sequence(self, model_config: Any, lengths: list[Any]) -> int:
        packed = getattr(self.cfg.data, "packing", False)  # DPO's pairs share this class, without packing
        return self.cfg.data.max_length if packed else super().memory_sequence(model_config, lengths)

    def training_rows(self, rows: int, lengths: list[Any]) -> int:
        if not getattr(self.cfg.data, "packing", False) or not lengths or not lengths[0].values:
            return rows
        kept = [min(v, self.cfg.data.max_length) for v in lengths[0].values]
        return max(1, round(rows * sum(kept) / len(kept) / self.cfg.data.max_length))  # blocks of max_length tokens

    def training_defaults(self) -> dict[str, Any]:
        # Only the loss is needed for perplexity: never gather vocabulary-sized logits.
        out: dict[str, Any] = {"prediction_loss_only": True, "remove_unused_columns": False}
        if not self.cfg.data.packing:  # packed blocks all have the same length already
            out["train_sampling_strategy"] = "group_by_length"
        return out

    def trainer_class(self) -> Any:
        return _causal_lm_trainer_class()

    # ---- after training --------------------------------------------------------------------------
    def load_trained_processing(self, path: str | Path) -> Any:
        return ensure_pad_token(super().load_trained_processing(path))

    def predict(self, loaded: Loaded, inputs: list[str], max_new_tokens: int = 50, do_sample: bool = False,
                temperature: float = 1.0, top_p: float = 1.0, num_beams: int = 1, seed: int = 0,
                batch_size: int = 16, **_: Any) -> list[dict[str, Any]]:
        """Generate a continuation of each prompt: [{"input": prompt, "output": continuation}]."""
        import torch
        from transformers import set_seed

        if temperature <= 0:
            raise ConfigError("--temperature must be above 0 (use --greedy for deterministic output)")
        if not 0 < top_p <= 1:
            raise ConfigError("--top-p must be in (0, 1]")
        tokenizer, model = loaded.processing, loaded.model
        tokenizer.padding_side = "left"  # generation continues from the right end of every row
        set_seed(seed)
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample,
                                   "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        if do_sample:
            options.update(temperature=temperature, top_p=top_p)
        results = []
        for first in range(0, len(inputs), batch_size):
            prompts = inputs[first:first + batch_size]
            rows = [ids or [start] for ids in encode_starts(tokenizer, prompts)]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, **options)
            for prompt, row in zip(prompts, out[:, width:]):
                results.append({"input": prompt, "output": tokenizer.decode(row, skip_special_tokens=True).strip()})
        return results


def ensure_pad_token(tokenizer: Any) -> Any:
    """Give a tokenizer without a pad token one: its eos token (GPT-2), else a new `<|endoftext|>`
    used as eos and pad (the model's embeddings are then resized in `after_model_load`)."""
    if tokenizer.eos_token is None:
        tokenizer.add_special_tokens({"eos_token": "<|endoftext|>"})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def encode_starts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of texts that begin a document: the tokenizer's own special tokens, and the bos
    token in front where the tokenizer adds none (GPT-2's `<|endoftext|>`), so that the first
    words of a document are learned (and generated from an empty prompt) in their own context."""
    bos = tokenizer.bos_token_id
    rows = tokenizer(texts)["input_ids"]
    if bos is None:
        return rows
    return [ids if ids[:1] == [bos] else [bos] + ids for ids in rows]


def document_tokenizer(tokenizer: Any, max_length: int, text_column: str, prompt_column: Optional[str],
                       completion_column: Optional[str]):
    """A batched `map` function: rows -> `input_ids` ([bos] + document + eos, at most `max_length`
    tokens; see `encode_starts`) and `labels` (-100 on the bos token and on prompt tokens). Rows left
    with nothing to learn are dropped."""
    eos = tokenizer.eos_token_id

    def with_eos(ids: list[int]) -> list[int]:
        return ids + [eos] if not ids or ids[-1] != eos else ids

    def tokenize(batch: dict[str, list]) -> dict[str, list[list[int]]]:
        out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        if prompt_column:
            prompts = encode_starts(tokenizer, [str(p) for p in batch[prompt_column]])
            completions = tokenizer([str(c) for c in batch[completion_column]], add_special_tokens=False)["input_ids"]
            pairs = [(p, with_eos(c)) for p, c in zip(prompts, completions)]
        else:
            pairs = [(ids[:1], with_eos(ids[1:])) for ids in encode_starts(tokenizer, [str(t) for t in batch[text_column]])]
        for prompt, target in pairs:
            ids = (prompt + target)[:max_length]
            labels = ([IGNORE] * len(prompt) + target)[:max_length]
            if all(l == IGNORE for l in labels[1:]):  # label 0 is never predicted (nothing before it)
                continue
            out["input_ids"].append(ids)
            out["labels"].append(labels)
        return out

    return tokenize


def pack_dataset(ds: Any, block_size: int) -> Any:
    """A tokenised split (`input_ids`, `labels`) -> packed blocks (see `pack_documents`)."""
    from datasets import Dataset

    return Dataset.from_dict(pack_documents(ds["input_ids"], ds["labels"], block_size))
