"""Task `masked-lm`: masked language modelling (BERT's pre-training objective), to continue a BERT-family
encoder on a domain's text before fine-tuning it ("domain adaptation", transformers' `run_mlm.py`).

Data: a text column (plain `.txt` files hold one document per line), blank documents dropped. With
`data.line_by_line: false` (the default) documents are tokenised with their special tokens,
concatenated and cut into blocks of `data.max_length` tokens as `run_mlm.py`'s `group_texts` does,
except that the remainder is kept as one last, shorter block instead of being dropped; with
`line_by_line: true` each document is one row, truncated to `data.max_length`.

Masking: `DataCollatorForLanguageModeling` (`data.mlm_probability`, `data.whole_word_mask`, which
reads word boundaries from the fast tokenizer's offsets) masks training batches anew every time.
Evaluation rows are masked once, when they are prepared, each with its own generator seeded by
`training.seed` and the row's index: the model before and after training, and every `hf-tuner eval`
of the run, is measured on the very same masks.

Metrics: perplexity = exp(mean cross-entropy over the masked tokens) and masked-token accuracy
(argmax over the vocabulary, taken in `preprocess_logits_for_metrics` so no vocabulary-sized logits
are kept). `predict` fills each mask token of a text with its top-k tokens, as the fill-mask
pipeline does. A run folder is a plain `*ForMaskedLM` model: `pipeline("fill-mask")` loads it, and
it is a valid `model.name_or_path` for text classification (a new head, with a one-line note).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

from pydantic import Field

from ..config import DataConfig
from ..data import Lengths, Splits, tokenizer_fingerprint
from ..errors import ConfigError, DataError
from .base import CardInfo, DataPart, Family, Job, Loaded, Objective, Task, fit_tokenizer, load_checked, require_texts
from .parts.classification import argmax
from .parts.language import perplexity_trainer_class
from .parts.loops import score

IGNORE = -100  # the label torch's cross-entropy skips
ROBERTA_TYPES = ("roberta", "xlm-roberta", "camembert")  # <s> <pad> </s> <unk> <mask> when trained from scratch
EVAL_MASK_SEED = 1_000_003  # row i of an evaluation split is masked with seed training.seed * EVAL_MASK_SEED + i


class MaskedLMData(DataConfig):
    """`data:` of masked-LM training: a text column, grouped blocks or one row per line, masking."""

    text_column: str = "text"
    line_by_line: bool = False
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    whole_word_mask: bool = False
    max_length: int = Field(128, ge=8)


# ------------------------------------------------------------------------------------------ family


@dataclass(frozen=True, kw_only=True)
class MaskedLMFamily(Family):
    """`AutoModelForMaskedLM` (BERT, RoBERTa, DistilBERT, ...): a tokenizer with a mask token; the LM
    head's decoder stays tied to the input embeddings (also under LoRA, which does not touch it)."""

    auto_model: str = "AutoModelForMaskedLM"
    peft_task_type: Optional[str] = None  # peft has no masked-LM task type: a plain PeftModel around the model

    def tokenizer_kind(self, job: Job) -> str:
        scratch = job.cfg.model.from_scratch
        return "encoder-decoder" if scratch is not None and scratch.model_type in ROBERTA_TYPES else "encoder"

    def build_processing(self, job: Job, splits: Splits) -> Any:
        processing = super().build_processing(job, splits)
        if job.cfg.data.whole_word_mask and not getattr(processing, "is_fast", False):
            raise ConfigError(f"data.whole_word_mask needs a fast tokenizer (word boundaries come from its offsets) "
                              f"and {type(processing).__name__} is a slow one: use a model with a tokenizer.json "
                              "(a fast tokenizer) or set data.whole_word_mask=false")
        return processing

    def fix_processing(self, processing: Any) -> Any:
        if getattr(processing, "mask_token", None) is None:
            raise ConfigError("the tokenizer has no mask token, which masked-LM training needs: use a BERT-family "
                              "tokenizer (model.tokenizer.name_or_path) or train one (model.tokenizer.train=true)")
        if processing.pad_token is None:
            raise ConfigError("the tokenizer has no pad token: use a BERT-family tokenizer with [PAD]")
        return processing

    def config_kwargs(self, job: Job, splits: Splits, processing: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"pad_token_id": processing.pad_token_id}
        if job.cfg.model.from_scratch is not None:
            kwargs["vocab_size"] = len(processing)
        return kwargs

    def load_model(self, job: Job, splits: Splits, processing: Any) -> Any:
        note = missing_lm_head(job)
        if note:
            job.notes.append(note)
        return super().load_model(job, splits, processing)

    def fix_up(self, job: Job, model: Any, processing: Any) -> Any:
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions:
            job.data.check_positions(job, positions)
        return fit_tokenizer(model, processing)


def missing_lm_head(job: Job) -> Optional[str]:
    """A one-line note when the checkpoint is an encoder saved without its masked-LM head (e.g.
    sentence-transformers' MiniLM, a `BertModel`): the head's transform layer then starts untrained."""
    from transformers import AutoConfig

    m = job.cfg.model
    if m.from_scratch is not None:
        return None
    from ..modeling import model_source

    try:
        own = AutoConfig.from_pretrained(model_source(m), revision=m.revision, trust_remote_code=m.trust_remote_code)
    except (OSError, ValueError):
        return None
    architectures = getattr(own, "architectures", None) or []
    if not architectures or any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures):
        return None
    return (f"model: the checkpoint is a {architectures[0]} without a masked-LM head: the head's transform layer "
            "starts untrained (its decoder is tied to the pretrained embeddings), so perplexity before training is high")


# ------------------------------------------------------------------------------------------ data


def group_blocks(ids: Any, block_size: int) -> tuple[Any, Any]:
    """A flat array of token ids -> (offsets, values) of blocks of `block_size` tokens, in order; the
    remainder is one last, shorter block (`run_mlm.py` drops it)."""
    import numpy as np

    n = len(ids)
    offsets = np.arange(0, n, block_size, dtype=np.int64)
    return np.append(offsets, n).astype(np.int32), ids


def group_dataset(ds: Any, block_size: int) -> Any:
    """A tokenised split (one row per document) -> the documents concatenated and cut into blocks of
    `block_size` (`group_blocks`), every column the same way, in pyarrow (no Python lists of ids)."""
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    if getattr(ds, "_indices", None) is not None:  # a selection: its rows, not the table's
        ds = ds.flatten_indices()
    columns = {}
    for name in ds.column_names:
        flat = ds.data.column(name).combine_chunks().flatten()  # list<...> -> the values, in row order
        offsets, values = group_blocks(flat, block_size)
        columns[name] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)
    return Dataset(InMemoryTable(pa.table(columns)))


class MaskingCollator:
    """Pads a batch (ids with the pad token, the special-tokens mask with 1, offsets with (0, 0)) and
    masks it with `DataCollatorForLanguageModeling`'s own masking; rows that already carry `labels`
    (evaluation rows, masked once when prepared) are only padded."""

    def __init__(self, tokenizer: Any, mlm_probability: float, whole_word_mask: bool):
        import warnings

        from transformers import DataCollatorForLanguageModeling

        self.pad_token_id = tokenizer.pad_token_id
        self.whole_word_mask = whole_word_mask
        with warnings.catch_warnings():  # "random replacement is not supported with whole word masking"
            warnings.simplefilter("ignore")
            self.inner = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability,
                                                         whole_word_mask=whole_word_mask)

    def pad(self, features: list[dict[str, Any]], key: str, value: Any) -> Any:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        return torch.tensor([list(f[key]) + [value] * (width - len(f[key])) for f in features], dtype=torch.long)

    def __call__(self, features: list[dict[str, Any]], generator: Any = None) -> dict[str, Any]:
        import torch

        batch = {"input_ids": self.pad(features, "input_ids", self.pad_token_id)}
        lengths = torch.tensor([len(f["input_ids"]) for f in features])
        batch["attention_mask"] = (torch.arange(batch["input_ids"].shape[1])[None, :] < lengths[:, None]).long()
        if "labels" in features[0]:
            batch["labels"] = self.pad(features, "labels", IGNORE)
            return batch
        special = self.pad(features, "special_tokens_mask", 1)
        offsets = self.pad(features, "offset_mapping", [0, 0]) if self.whole_word_mask else None
        self.inner.generator = generator  # None: the global generator, which the Trainer seeds
        batch["input_ids"], batch["labels"] = self.inner.torch_mask_tokens(batch["input_ids"], special_tokens_mask=special,
                                                                           offset_mapping=offsets)
        self.inner.generator = None
        return batch


def mask_once(collator: MaskingCollator, ds: Any, seed: int) -> Any:
    """An evaluation split with fixed masks: row i masked with a generator seeded by `seed` and i,
    so a row's masks depend on neither the batch it lands in nor anything trained before."""
    import torch

    def mask(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "labels": []}
        keys = [k for k in ("input_ids", "special_tokens_mask", "offset_mapping") if k in batch]
        for i, index in enumerate(indices):
            row = {k: batch[k][i] for k in keys}
            masked = collator([row], torch.Generator().manual_seed(seed * EVAL_MASK_SEED + index))
            out["input_ids"].append(masked["input_ids"][0].tolist())
            out["labels"].append(masked["labels"][0].tolist())
        return out

    return ds.map(mask, with_indices=True, batched=True, remove_columns=ds.column_names, desc="Masking evaluation rows")


class MaskedTexts(DataPart):
    """Documents in a text column, tokenised once (cached), grouped into blocks or kept one per row;
    training batches masked on the fly, evaluation rows masked once with a fixed seed."""

    schema = MaskedLMData

    def load(self, job: Job) -> Splits:
        column = job.cfg.data.text_column
        return load_checked(job, {"text_column": column}, check=require_texts(column))

    def training_texts(self, job: Job, splits: Splits) -> Iterator[str]:
        yield from (str(t) for t in splits.train[job.cfg.data.text_column] if str(t).strip())

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        d = job.cfg.data
        text, limit, offsets = d.text_column, d.max_length, d.whole_word_mask

        def tokenize(batch: dict[str, list]) -> dict[str, list]:
            texts = [str(t) for t in batch[text] if t is not None and str(t).strip()]  # blank lines: nothing to learn
            return processing(texts, truncation=d.line_by_line, max_length=limit if d.line_by_line else None,
                              return_special_tokens_mask=True, return_offsets_mapping=offsets,
                              return_attention_mask=False, return_token_type_ids=False)

        key = (f"masked-lm|{tokenizer_fingerprint(processing)}|{text}|{d.line_by_line}|{limit if d.line_by_line else ''}|"
               f"offsets={offsets}")
        features = job.tokenise(splits, tokenize, key)
        for name, ds in features.items():
            if len(ds) == 0:
                raise DataError(f"the {name} data has no text in column '{text}' (every row is blank)")
        if not d.line_by_line:
            features = features.map(lambda name, ds: group_dataset(ds, limit))
        collator = self.collator(job, processing)
        seed = job.cfg.training.seed
        for name in ("validation", "test"):
            if getattr(features, name) is not None:
                setattr(features, name, mask_once(collator, getattr(features, name), seed))
        return features

    def collator(self, job: Job, processing: Any) -> Any:
        return MaskingCollator(processing, job.cfg.data.mlm_probability, job.cfg.data.whole_word_mask)

    def defaults(self, job: Job) -> dict[str, Any]:
        # the collator reads the special-tokens mask and offsets, which the Trainer would drop
        out: dict[str, Any] = {"remove_unused_columns": False}
        if job.cfg.data.line_by_line:
            out["train_sampling_strategy"] = "group_by_length"  # grouped blocks all have one length already
        return out

    def token_lengths(self, job: Job, rows: Any, processing: Any) -> list[Lengths]:
        d = job.cfg.data
        texts = [str(t) for t in rows[d.text_column] if t is not None and str(t).strip()]
        ids = processing(texts)["input_ids"] if texts else []
        # grouped documents are not truncated: longer ones run on into the next block
        return [Lengths(d.text_column, [len(x) for x in ids], d.max_length,
                        "cut" if d.line_by_line else "split over blocks")]

    def memory_sequence(self, job: Job, model_config: Any, lengths: list[Any]) -> int:
        return super().memory_sequence(job, model_config, lengths) if job.cfg.data.line_by_line else job.cfg.data.max_length

    def training_rows(self, job: Job, rows: int, lengths: list[Any]) -> int:
        if job.cfg.data.line_by_line or not lengths or not lengths[0].values:
            return rows
        mean = sum(lengths[0].values) / len(lengths[0].values)
        return max(1, round(rows * mean / job.cfg.data.max_length))  # blocks of max_length tokens

    def encode_inputs(self, job: Job, loaded: Loaded, batch: list[str]) -> dict[str, Any]:
        enc = loaded.processing(batch, truncation=True, max_length=job.cfg.data.max_length, padding=True, return_tensors="pt")
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


# ------------------------------------------------------------------------------------------ objective


def masked_accuracy(eval_pred: Any) -> dict[str, float]:
    """`compute_metrics`: the share of masked tokens whose argmax prediction is the original token."""
    import numpy as np

    predictions, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
    masked = labels != IGNORE
    return {"accuracy": float((predictions[masked] == labels[masked]).mean()) if masked.any() else 0.0}


def output_head(model: Any) -> Optional[Any]:
    """The module of a `*ForMaskedLM` model that turns hidden states into vocabulary logits, one
    position at a time: the top-level child holding the output embeddings (BERT's `cls`, RoBERTa's
    `lm_head`, DistilBERT's `vocab_projector`); None when there is none."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if decoder is None:
        return None
    for name, child in inner.named_children():
        if child is decoder or any(m is decoder for m in child.modules()):
            return child
    return None


def masked_lm_trainer_class() -> Any:
    """The perplexity Trainer, whose training step runs the LM head on the masked positions only.

    A masked-LM loss reads the logits of the ~15% masked tokens, yet `*ForMaskedLM` projects every
    position onto the vocabulary: for MiniLM (hidden 384, 30,522 tokens) that projection is about as
    much work as the six layers under it. Training gathers the masked positions' hidden states before
    the head (a forward pre-hook on the head, so the model is still called through any DDP / peft
    wrapper) and takes the same mean cross-entropy over them. Evaluation keeps the plain forward:
    its metrics read every position's argmax."""
    import torch

    base = perplexity_trainer_class()

    class MaskedLMTrainer(base):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            head = output_head(self.accelerator.unwrap_model(model)) if model.training and not return_outputs else None
            labels = inputs.get("labels")
            if head is None or labels is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            keep = labels != IGNORE

            def gather(module: Any, args: tuple) -> tuple:
                return (args[0][keep],) + tuple(args[1:])

            handle = head.register_forward_pre_hook(gather)
            try:
                logits = model(**{k: v for k, v in inputs.items() if k != "labels"})["logits"]
            finally:
                handle.remove()
            if logits.dim() != 2 or logits.shape[0] != int(keep.sum()):  # the head is not applied per position
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if logits.shape[0] == 0:  # no masked token in the batch: nothing to learn, no NaN
                return logits.sum() * 0.0
            return torch.nn.functional.cross_entropy(logits.float(), labels[keep])

    return MaskedLMTrainer


class MaskedLanguageModeling(Objective):
    """Cross-entropy over the masked tokens; evaluation reports perplexity and masked-token accuracy;
    `predict` gives the top-k fillers of each mask."""

    primary_metric = "perplexity"
    greater_is_better = False
    loss_is_a_mean = True  # BERT's masked-LM loss is a plain mean over the masked tokens

    def defaults(self, job: Job) -> dict[str, Any]:
        return {"label_names": ["labels"]}  # a PeftModel's forward does not name them

    def logit_share(self, job: Job) -> float:
        return job.cfg.data.mlm_probability  # the head runs on the masked positions only (masked_lm_trainer_class)

    def trainer_class(self) -> Any:
        return masked_lm_trainer_class()

    def trainer_kwargs(self, job: Job, model: Any, processing: Any) -> dict[str, Any]:
        return {**super().trainer_kwargs(job, model, processing), "compute_metrics": masked_accuracy,
                "preprocess_logits_for_metrics": argmax}

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], top_k: int = 5, batch_size: int = 32,
                **_: Any) -> list[dict[str, Any]]:
        """For each input, the top-k tokens of each mask token with their probabilities (and, with one
        mask, the text filled in), as `pipeline("fill-mask")` gives them."""
        tokenizer = loaded.processing
        mask = tokenizer.mask_token
        for item in inputs:
            if mask not in item:
                raise DataError(f"no {mask} in {item!r}: mark each word to fill with {mask} (e.g. \"the {mask} was great\")")
        results = []
        for batch, logits in score(loaded.model, inputs, lambda b: job.data.encode_inputs(job, loaded, b), batch_size):
            enc = job.data.encode_inputs(job, loaded, batch)
            for row, (item, ids) in enumerate(zip(batch, enc["input_ids"])):
                positions = (ids == tokenizer.mask_token_id).nonzero().flatten().tolist()
                masks = []
                for pos in positions:
                    values, tokens = logits[row, pos].softmax(-1).topk(min(top_k, logits.shape[-1]))
                    top = []
                    for value, token in zip(values.tolist(), tokens.tolist()):
                        entry = {"token": tokenizer.decode([token]).strip(), "token_id": token, "score": round(value, 4)}
                        if len(positions) == 1:
                            filled = ids.clone()
                            filled[pos] = token
                            entry["sequence"] = tokenizer.decode(filled, skip_special_tokens=True)
                        top.append(entry)
                    masks.append(top)
                results.append({"input": item, "masks": masks})
        return results

    def format_result(self, result: dict[str, Any]) -> str:
        parts = [f"[{i + 1}] " + "  ".join(f"{t['token']} {t['score']:.3f}" for t in top)
                 for i, top in enumerate(result["masks"])]
        return f"{result['input']}\t" + " | ".join(parts)


TASK = Task(
    name="masked-lm",
    family=MaskedLMFamily(),
    data=MaskedTexts(),
    objective=MaskedLanguageModeling(),
    card=CardInfo("fill-mask", "Fill-Mask"),
)
