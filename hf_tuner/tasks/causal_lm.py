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

from typing import Any, Iterator, Optional

from pydantic import Field

from ..config import DataConfig, RunConfig
from ..data import Lengths, Splits, tokenizer_fingerprint
from ..errors import DataError
from .base import CardInfo, DataPart, Job, Loaded, Objective, Task, load_checked, require_texts
from .parts.families import CausalLMFamily, encode_starts
from .parts.language import complete_prompts, perplexity_trainer_class

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



class CausalLMData(DataConfig):
    """`data:` of causal LM training: plain text, or prompt/completion pairs; optional packing."""

    text_column: str = "text"
    prompt_column: Optional[str] = None
    completion_column: Optional[str] = None
    max_length: int = Field(128, ge=8)
    packing: bool = False


class Documents(DataPart):
    """Documents to learn every token of, or prompts and the completions to learn (see the module
    docstring); optionally packed into blocks of `data.max_length` tokens."""

    schema = CausalLMData

    def check_config(self, cfg: RunConfig) -> list[str]:
        problems = []
        d = cfg.data
        if bool(d.prompt_column) != bool(d.completion_column):
            problems.append("prompt/completion data needs both data.prompt_column and data.completion_column "
                            "(or neither, to train on data.text_column)")
        if d.packing and (cfg.training.model_extra or {}).get("use_cache"):
            # transformers only keeps packed documents apart when no KV cache is built
            problems.append("data.packing needs training.use_cache=false (the default): remove training.use_cache")
        return problems

    def columns(self, job: Job) -> dict[str, str]:
        """data.KEY -> column: prompt and completion (check_config wants both or neither), else the text."""
        d = job.cfg.data
        if d.prompt_column:
            return {"prompt_column": d.prompt_column, "completion_column": d.completion_column}
        return {"text_column": d.text_column}

    def load(self, job: Job) -> Splits:
        columns = self.columns(job)
        return load_checked(job, columns, check=require_texts(*columns.values()))

    def training_texts(self, job: Job, splits: Splits) -> Iterator[str]:
        for col in self.columns(job).values():
            yield from (str(t) for t in splits.train[col])

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        d = job.cfg.data
        tokenize = document_tokenizer(processing, d.max_length, d.text_column, d.prompt_column, d.completion_column)
        key = (f"causal-lm/v{TOKENISATION_VERSION}|{tokenizer_fingerprint(processing)}|{d.text_column}|{d.prompt_column}|"
               f"{d.completion_column}|{d.max_length}|eos={processing.eos_token_id}")
        features = job.tokenise(splits, tokenize, key)
        for name, ds in splits.items():
            out = getattr(features, name)
            if len(out) == 0:
                raise DataError(f"no {name} row has a token to train on within data.max_length={d.max_length}: "
                                "raise data.max_length or shorten the prompts")
            if len(out) < len(ds):
                features.notes.append(f"{name}: dropped {len(ds) - len(out)} rows with no token to learn within data.max_length")
        if d.packing:
            features.train = pack_dataset(features.train, d.max_length)
        return features

    def collator(self, job: Job, processing: Any) -> Any:
        return CausalLMCollator(processing.pad_token_id)

    def defaults(self, job: Job) -> dict[str, Any]:
        # packed blocks all have the same length already; unpacked documents train in random order:
        # length-grouped batches (1.7x the samples/s) ended gpt2-tweets unpacked 8.0 +- 1.6 perplexity
        # (7%) worse over 3 seeds even with their order shuffled (bench/README.md, "Length-grouped
        # batches and quality"); `training.train_sampling_strategy: group_by_length` still chooses them
        return {}

    def token_lengths(self, job: Job, rows: Any, processing: Any) -> list[Lengths]:
        d = job.cfg.data
        whole = document_tokenizer(processing, 10 ** 9, d.text_column, d.prompt_column, d.completion_column)(rows[:])
        return [Lengths("prompt+completion" if d.prompt_column else d.text_column, [len(x) for x in whole["input_ids"]],
                        d.max_length)]

    def memory_sequence(self, job: Job, model_config: Any, lengths: list[Any]) -> int:
        return job.cfg.data.max_length if job.cfg.data.packing else super().memory_sequence(job, model_config, lengths)

    def training_rows(self, job: Job, rows: int, lengths: list[Any]) -> int:
        if not job.cfg.data.packing or not lengths or not lengths[0].values:
            return rows
        kept = [min(v, job.cfg.data.max_length) for v in lengths[0].values]
        return max(1, round(rows * sum(kept) / len(kept) / job.cfg.data.max_length))  # blocks of max_length tokens



class LanguageModeling(Objective):
    """Next-token cross-entropy; evaluation reports perplexity, predict continues prompts."""

    primary_metric = "perplexity"
    greater_is_better = False
    harness = True

    def defaults(self, job: Job) -> dict[str, Any]:
        # Only the loss is needed for perplexity: never gather vocabulary-sized logits.
        return {"prediction_loss_only": True, "remove_unused_columns": False}

    def trainer_class(self) -> Any:
        return perplexity_trainer_class()

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
        return complete_prompts(job, loaded, inputs, **options)


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


TASK = Task(
    name="causal-lm",
    family=CausalLMFamily(),
    data=Documents(),
    objective=LanguageModeling(),
    card=CardInfo("text-generation", "Text Generation"),
)
