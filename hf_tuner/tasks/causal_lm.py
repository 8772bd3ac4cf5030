"""Task `causal-lm`: GPT-2-family language models on plain text, prompt/completion pairs, or
conversations (supervised fine-tuning of a chat model).

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

Conversations (a `data.messages_column` of `{role, content}` lists, or prompt and completion columns
that hold such lists, TRL's conversational prompt/completion) are rendered with the tokenizer's chat
template (`model.tokenizer.chat_template`: the model's own, `chatml`, or a Jinja template) and train
on the assistant's turns only (`data.assistant_only_loss`; see `parts.chat`). The mask is part of the
labels before packing, so packed blocks keep it.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

from pydantic import Field

from ..config import DataConfig, RunConfig
from ..data import Lengths, Splits, tokenizer_fingerprint
from ..errors import DataError
from .base import CardInfo, DataPart, Job, Loaded, Objective, Task, load_checked, require_texts
from .parts.chat import check_messages, encode_trained, is_conversation, require_template, trained_ranges
from .parts.families import CausalLMFamily, encode_starts
from .parts.language import complete_prompts, perplexity_trainer_class

IGNORE = -100  # the label torch's cross-entropy skips
TOKENISATION_VERSION = 2  # part of the cache key: bump when `document_tokenizer` changes what it writes


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
    # a column of conversations (lists of {role, content}); used when the data has it and no
    # prompt/completion columns are set
    messages_column: str = "messages"
    assistant_only_loss: bool = True  # conversations: train on the assistant's turns only
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

    def columns(self, job: Job, column_names: Optional[list[str]] = None) -> dict[str, str]:
        """data.KEY -> column: prompt and completion (check_config wants both or neither), else the
        conversations when the data (`column_names`) has `data.messages_column`, else the text."""
        d = job.cfg.data
        if d.prompt_column:
            return {"prompt_column": d.prompt_column, "completion_column": d.completion_column}
        if column_names is not None and d.messages_column in column_names:
            return {"messages_column": d.messages_column}
        return {"text_column": d.text_column}

    def load(self, job: Job) -> Splits:
        d = job.cfg.data
        columns: dict[str, str] = {}
        sources: dict[str, str] = {}

        def pick(splits: Splits) -> dict[str, str]:
            columns.update(self.columns(job, splits.train.column_names))
            sources.update(splits.sources)
            return columns

        def check_rows(name: str, ds: Any) -> Any:
            """Conversations are checked as loaded, so a row number is the file's (0-based)."""
            if len(ds) and ("messages_column" in columns or (d.prompt_column and is_conversation(ds[0][d.prompt_column]))):
                check_conversations(job, f"{sources.get(name, name)} ({name})", ds, list(columns.values()))
            return ds

        def check(name: str, ds: Any) -> None:
            if not self.conversational(job, ds):
                require_texts(*columns.values())(name, ds)

        return load_checked(job, pick, after=check_rows, check=check)

    def conversational(self, job: Job, ds: Any) -> bool:
        return len(ds) > 0 and any(is_conversation(ds[0][c]) for c in self.columns(job, ds.column_names).values())

    def training_texts(self, job: Job, splits: Splits) -> Iterator[str]:
        for col in self.columns(job, splits.train.column_names).values():
            for value in splits.train[col]:
                yield from ([m["content"] for m in value] if is_conversation(value) else [str(value)])

    def tokenizer_for(self, job: Job, processing: Any, ds: Any, max_length: int) -> Any:
        """The batched map function of this data: documents, prompt/completion, or conversations."""
        d = job.cfg.data
        if self.conversational(job, ds):
            require_template(processing)
            return conversation_tokenizer(processing, max_length, self.columns(job, ds.column_names), d.assistant_only_loss)
        return document_tokenizer(processing, max_length, d.text_column, d.prompt_column, d.completion_column)

    def check_processing(self, job: Job, splits: Splits, processing: Any) -> None:
        if self.conversational(job, splits.train):  # a template there, and it renders the first row
            self.tokenizer_for(job, processing, splits.train, job.cfg.data.max_length)(splits.train[:1])

    def show_examples(self, job: Job, rows: Any, processing: Any) -> list[dict[str, Any]]:
        from .parts.chat import trained_text

        out = self.tokenizer_for(job, processing, rows, job.cfg.data.max_length)(rows[:])
        return [{"text": processing.decode(ids), "trained": trained_text(processing, ids, labels, IGNORE)}
                for ids, labels in zip(out["input_ids"], out["labels"])]

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        d = job.cfg.data
        tokenize = self.tokenizer_for(job, processing, splits.train, d.max_length)
        columns = "|".join(self.columns(job, splits.train.column_names).values())
        key = (f"causal-lm/v{TOKENISATION_VERSION}|{tokenizer_fingerprint(processing)}|{columns}|{d.max_length}|"
               f"eos={processing.eos_token_id}|template={getattr(processing, 'chat_template', None)}|"
               f"assistant_only={d.assistant_only_loss}")
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
        whole = self.tokenizer_for(job, processing, rows, 10 ** 9)(rows[:])
        name = "prompt+completion" if d.prompt_column else next(iter(self.columns(job, rows.column_names).values()))
        return [Lengths(name, [len(x) for x in whole["input_ids"]], d.max_length)]

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


def check_conversations(job: Job, where: str, ds: Any, columns: list[str]) -> None:
    """Every conversation cell is a list of {role, content} messages with a known role and, under
    assistant-only loss, an assistant turn (in the completion, for prompt/completion data)."""
    d = job.cfg.data
    for column in columns:
        need = d.assistant_only_loss and column != d.prompt_column
        for i, value in enumerate(ds[column]):
            check_messages(value, f"{where}, row {i}, column '{column}'", need_assistant=need)


def conversation_tokenizer(tokenizer: Any, max_length: int, columns: dict[str, str], assistant_only: bool):
    """A batched `map` function: conversations -> `input_ids` (rendered with the chat template, at
    most `max_length` tokens) and `labels` (-100 but on the assistant's turns, or everywhere with
    `assistant_only` false; prompt/completion data: the completion's turns). Rows left with nothing to
    learn are dropped."""
    def tokenize(batch: dict[str, list]) -> dict[str, list[list[int]]]:
        out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        if "messages_column" in columns:
            rows = [(list(m), 0) for m in batch[columns["messages_column"]]]
        else:
            rows = [(list(p) + list(c), len(p)) for p, c in zip(batch[columns["prompt_column"]], batch[columns["completion_column"]])]
        for messages, first in rows:
            text, ranges = trained_ranges(tokenizer, messages, first, assistant_only)
            ids, labels = encode_trained(tokenizer, text, ranges, IGNORE)
            ids, labels = ids[:max_length], labels[:max_length]
            if all(l == IGNORE for l in labels[1:]):
                continue
            labels[0] = IGNORE  # nothing before the first token predicts it
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
