"""Task `seq2seq`: encoder-decoder text generation (BART family; Marian, mBART, Pegasus, T5 load the
same way) for summarisation and translation.

Sources (with `data.source_prefix`) and targets are tokenised once and cached; training runs on
`Seq2SeqTrainer` with `predict_with_generate`, so evaluation generates text and scores it with the
metrics `eval.metrics` names (ROUGE for summaries, BLEU / chrF for translation), offline.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from pydantic import Field

from ..config import DataConfig, RunConfig
from ..data import Lengths, Splits, tokenizer_fingerprint
from ..errors import ConfigError, did_you_mean, listing
from .base import CardInfo, DataPart, Family, Job, Loaded, Objective, Task, load_checked, require_texts
from .parts.loops import generate

# eval.metrics name -> the keys it adds to the metrics (rouge: 0..1 F-measures; bleu, chrf: 0..100)
METRICS: dict[str, tuple[str, ...]] = {
    "rouge": ("rouge1", "rouge2", "rougeL", "rougeLsum"),
    "bleu": ("bleu",),
    "chrf": ("chrf",),
}
METRIC_ALIASES = {"sacrebleu": "bleu"}  # `evaluate`'s name for the BLEU that metrics.bleu computes
DEFAULT_METRICS = ["rouge"]
# The metric that says whether training helped, by preference: chrF moves smoothly even when a
# weak model gets no 4-gram right (BLEU 0); ROUGE-1 is the usual headline for summaries.
PRIMARY_PREFERENCE = ("chrf", "rouge1", "bleu")


def select_metrics(names: Optional[Sequence[str]]) -> list[str]:
    """The built-in seq2seq metrics `eval.metrics` chooses (default: rouge, also when it names only
    `evaluate` modules); an entry close to a built-in name that is no file is a typo, an error."""
    from pathlib import Path

    chosen: list[str] = []
    for name in names or DEFAULT_METRICS:
        key = str(name).strip().lower()
        key = METRIC_ALIASES.get(key, key)
        if key not in METRICS:
            if did_you_mean(key, METRICS) and not Path(str(name)).expanduser().exists():
                raise ConfigError(
                    f"unknown eval.metrics entry '{name}' for task seq2seq{did_you_mean(key, METRICS)}; "
                    f"seq2seq metrics are: {', '.join(METRICS)} (or an evaluate module: a path or a name)"
                )
            continue  # an evaluate module (tasks.base.metric_modules)
        if key not in chosen:
            chosen.append(key)
    return chosen or list(DEFAULT_METRICS)


def primary_metric_for(metrics: Sequence[str]) -> str:
    """The summary's headline metric for a metric selection (chrf, else rouge1, else bleu)."""
    keys = [k for m in metrics for k in METRICS[m]]
    return next(k for k in PRIMARY_PREFERENCE if k in keys)


def text_metrics(predictions: Sequence[str], references: Sequence[str], metrics: Sequence[str]) -> dict[str, float]:
    """Score generated texts against references with the selected metrics (hf_tuner.metrics)."""
    from .. import metrics as m

    out: dict[str, float] = {}
    for name in metrics:
        if name == "rouge":
            out.update(m.rouge(predictions, references))
        elif name == "bleu":
            out["bleu"] = m.bleu(predictions, references)
        elif name == "chrf":
            out["chrf"] = m.chrf(predictions, references)
    return out


def finish_labels(labels: Any, pad_token_id: Optional[int]) -> Any:
    """Labels ready for the loss: padding masked to -100 and stored contiguously (BART's loss calls
    `labels.view(-1)`, which fails on a sliced, non-contiguous tensor)."""
    if pad_token_id is not None:
        labels = labels.masked_fill(labels == pad_token_id, -100)
    return labels.contiguous()


class Seq2SeqCollator:
    """`DataCollatorForSeq2Seq` (dynamic padding; labels padded with -100), then `finish_labels`.
    Given the model, the batch also carries `decoder_input_ids` (the labels shifted right, by the
    model's own `prepare_decoder_input_ids_from_labels`): the Trainer's label smoother
    (`training.label_smoothing_factor`) takes `labels` out of the batch before the forward pass, and
    a model left without labels or decoder inputs decodes from its shifted *inputs* (BART), whose
    logits then do not line up with the labels."""

    def __init__(self, tokenizer: Any, model: Any = None):
        from transformers import DataCollatorForSeq2Seq

        self.tokenizer = tokenizer
        self.inner = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    def with_model(self, model: Any) -> "Seq2SeqCollator":
        return Seq2SeqCollator(self.tokenizer, model)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(features)
        if "labels" in batch:
            batch["labels"] = finish_labels(batch["labels"], self.tokenizer.pad_token_id)
        return batch


@functools.lru_cache(maxsize=None)
def generation_trainer_class() -> type:
    """`Seq2SeqTrainer` that generates with the recipe's settings (`eval.max_new_tokens`,
    `eval.num_beams`) and, with `eval.max_eval_generate_samples`, generates for only that many
    rows while the loss still covers the whole split."""
    from transformers import Seq2SeqTrainer
    from transformers.trainer_utils import EvalLoopOutput

    class GenerationTrainer(Seq2SeqTrainer):
        def __init__(self, *args: Any, generation_kwargs: Optional[dict[str, Any]] = None,
                     max_generate_samples: Optional[int] = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.generation_kwargs = dict(generation_kwargs or {})
            self.max_generate_samples = max_generate_samples

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **gen_kwargs):
            gen_kwargs = {**self.generation_kwargs, **gen_kwargs}
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix, **gen_kwargs)

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"):
            cap = self.max_generate_samples
            dataset = getattr(dataloader, "dataset", None)
            if (cap is None or prediction_loss_only or not self.args.predict_with_generate
                    or not hasattr(dataset, "select") or len(dataset) <= cap):
                return super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
            full = super().evaluation_loop(dataloader, description, True, ignore_keys, metric_key_prefix)
            generated = super().evaluation_loop(
                self.get_eval_dataloader(dataset.select(range(cap))), description, False, ignore_keys, metric_key_prefix)
            metrics = dict(full.metrics or {})
            loss_key = f"{metric_key_prefix}_loss"
            metrics.update({k: v for k, v in (generated.metrics or {}).items() if k != loss_key})
            metrics[f"{metric_key_prefix}_generated_rows"] = cap
            return EvalLoopOutput(generated.predictions, generated.label_ids, metrics, full.num_samples)

    return GenerationTrainer


class Seq2SeqData(DataConfig):
    """`data:` of seq2seq: a source and a target text column (a struct field like `translation.en`
    reads into Hub translation sets), an optional source prefix (T5's "summarize: ") and lengths."""

    source_column: str = "source"
    target_column: str = "target"
    source_prefix: str = ""
    max_length: int = Field(128, ge=8)
    max_target_length: int = Field(64, ge=4)


@dataclass(frozen=True, kw_only=True)
class Seq2SeqFamily(Family):
    """`AutoModelForSeq2SeqLM` (BART, Marian, mBART, Pegasus, T5): a model built from scratch takes its
    special token ids from the tokenizer, on its config and on the generation config it saves."""

    auto_model: str = "AutoModelForSeq2SeqLM"
    peft_task_type: Optional[str] = "SEQ_2_SEQ_LM"

    def tokenizer_kind(self, job: Job) -> str:
        return "encoder-decoder"  # <s> <pad> </s> <unk> <mask>, BART's special tokens and ids

    def config_kwargs(self, job: Job, splits: Splits, processing: Any) -> dict[str, Any]:
        if job.cfg.model.from_scratch is None:
            return {}
        return {"vocab_size": len(processing), **special_token_ids(processing)}

    def fix_up(self, job: Job, model: Any, processing: Any) -> Any:
        """transformers 5 reads generation settings from `generation_config`, not the model config:
        a model built from scratch gets the new tokenizer's ids there too (and so in the run folder)."""
        if job.cfg.model.from_scratch is not None:
            for key, value in special_token_ids(processing).items():
                setattr(model.generation_config, key, value)
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions:
            job.data.check_positions(job, positions)
        return model

    def translate(self, loaded: Loaded, inputs: list[str], encode: Any, options: dict[str, Any], seed: int,
                  batch_size: int) -> list[str]:
        """The generated text for each input (`encode` turns a batch into model inputs)."""
        rows = generate(loaded.model, inputs, encode, options, seed, batch_size)
        return [t.strip() for t in loaded.processing.batch_decode(rows, skip_special_tokens=True)]


class SourceTarget(DataPart):
    """A source and a target text per row, tokenised once (targets with `text_target`)."""

    schema = Seq2SeqData

    def load(self, job: Job) -> Splits:
        d = job.cfg.data
        columns = [d.source_column, d.target_column]
        return load_checked(job, {"source_column": d.source_column, "target_column": d.target_column},
                            before=lambda name, ds: _flatten_for(ds, columns), check=require_texts(*columns))

    def training_texts(self, job: Job, splits: Splits):
        """A tokenizer trained from scratch learns both sides (source and target language)."""
        d = job.cfg.data
        yield from splits.train[d.source_column]
        yield from splits.train[d.target_column]

    def check_positions(self, job: Job, positions: int) -> None:
        """A learned position table shorter than the sequences fails mid-training: say so up front."""
        cfg = job.cfg
        d = cfg.data
        # the decoder also holds its start token next to the tokens it generates
        for key, value, needed in (("data.max_length", d.max_length, d.max_length),
                                   ("data.max_target_length", d.max_target_length, d.max_target_length),
                                   ("eval.max_new_tokens", cfg.eval.max_new_tokens, cfg.eval.max_new_tokens + 1)):
            if needed > positions:
                where = "model.from_scratch.max_position_embeddings" if cfg.model.from_scratch else "the model's max_position_embeddings"
                raise ConfigError(f"{key}={value} is longer than {where}={positions}: lower {key} or raise the positions")

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        d = job.cfg.data
        source, target, prefix = d.source_column, d.target_column, d.source_prefix
        max_length, max_target_length = d.max_length, d.max_target_length

        def tokenize(batch):
            encoded = processing([prefix + s for s in batch[source]], truncation=True, max_length=max_length)
            # text_target: tokenizers with a separate target vocabulary (Marian) switch to it
            targets = processing(text_target=list(batch[target]), truncation=True, max_length=max_target_length)
            encoded["labels"] = targets["input_ids"]
            return encoded

        key = f"seq2seq|{tokenizer_fingerprint(processing)}|{source}|{target}|{prefix!r}|{max_length}|{max_target_length}"
        return job.tokenise(splits, tokenize, key)

    def collator(self, job: Job, processing: Any) -> Any:
        return Seq2SeqCollator(processing)

    def defaults(self, job: Job) -> dict[str, Any]:
        return {"train_sampling_strategy": "group_by_length"}

    def token_lengths(self, job: Job, rows: Any, processing: Any) -> list[Lengths]:
        d = job.cfg.data
        sources = processing([d.source_prefix + s for s in rows[d.source_column]])["input_ids"]
        targets = processing(text_target=list(rows[d.target_column]))["input_ids"]
        return [Lengths(d.source_column, [len(x) for x in sources], d.max_length),
                Lengths(d.target_column, [len(x) for x in targets], d.max_target_length)]

    def encode_inputs(self, job: Job, loaded: Loaded, batch: list[str]) -> dict[str, Any]:
        d = job.cfg.data
        return loaded.processing([d.source_prefix + t for t in batch], truncation=True, max_length=d.max_length,
                                 padding=True, return_tensors="pt")


class TextGeneration(Objective):
    """Cross-entropy on the targets; evaluation generates and scores the texts (`eval.metrics`)."""

    loss_is_a_mean = True  # BART/Marian/T5 heads average their cross-entropy themselves
    arguments = "transformers:Seq2SeqTrainingArguments"
    primary_metric = "rouge1"
    metric_choices = (*METRICS, *METRIC_ALIASES)
    scores_modules = True  # eval.metrics may name evaluate modules: they get the generated and reference texts
    greater_is_better = True

    def metric(self, job: Job) -> str:
        return primary_metric_for(select_metrics(job.cfg.eval.metrics))

    def check_config(self, cfg: RunConfig) -> list[str]:
        try:
            select_metrics(cfg.eval.metrics)
        except ConfigError as exc:
            return [str(exc)]
        return []

    def defaults(self, job: Job) -> dict[str, Any]:
        return {"predict_with_generate": True}

    def trainer_class(self) -> Any:
        return generation_trainer_class()

    def generation_kwargs(self, job: Job) -> dict[str, Any]:
        """Generation settings for evaluation: `eval.max_new_tokens` and `eval.num_beams`, unless
        the recipe set the Seq2SeqTrainingArguments names for them itself."""
        training = job.cfg.training.model_extra or {}
        out: dict[str, Any] = {}
        if training.get("generation_max_length") is None:
            out["max_new_tokens"] = job.cfg.eval.max_new_tokens
        if training.get("generation_num_beams") is None:
            out["num_beams"] = job.cfg.eval.num_beams
        return out

    def trainer_kwargs(self, job: Job, model: Any, processing: Any) -> dict[str, Any]:
        kwargs = super().trainer_kwargs(job, model, processing)
        if isinstance(kwargs.get("data_collator"), Seq2SeqCollator):
            kwargs["data_collator"] = kwargs["data_collator"].with_model(model)
        return {**kwargs,
                "compute_metrics": generated_text_metrics(processing, select_metrics(job.cfg.eval.metrics)),
                "generation_kwargs": self.generation_kwargs(job),
                "max_generate_samples": job.cfg.eval.max_eval_generate_samples}

    def metric_pairs(self, job: Job, processing: Any, eval_pred: Any) -> tuple[list[Any], list[Any]]:
        predictions, references, _ = decoded(processing, eval_pred)
        return predictions, references

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], max_new_tokens: int = 50, num_beams: int = 1,
                do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                batch_size: int = 16, **_: Any) -> list[dict[str, Any]]:
        """Generate an output text for each source text with the run's model (full or LoRA)."""
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample}
        if do_sample:
            options.update(temperature=temperature, top_p=top_p)
        texts = job.family.translate(loaded, inputs, lambda b: job.data.encode_inputs(job, loaded, b), options, seed,
                                     batch_size)
        return [{"input": text, "output": generated} for text, generated in zip(inputs, texts)]


def decoded(tokenizer: Any, eval_pred: Any) -> tuple[list[str], list[str], Any]:
    """Generated and reference texts of the Trainer's evaluation output, and the generated ids."""
    import numpy as np

    preds, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(preds, tuple):
        preds = preds[0]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    preds = np.where(preds < 0, pad, preds)  # -100: padding between batches
    labels = np.where(labels < 0, pad, labels)
    predictions = [t.strip() for t in tokenizer.batch_decode(preds, skip_special_tokens=True)]
    references = [t.strip() for t in tokenizer.batch_decode(labels, skip_special_tokens=True)]
    return predictions, references, preds


def generated_text_metrics(tokenizer: Any, metrics: list[str]):
    """`compute_metrics` of generated token ids: decoded, scored against the references, plus the
    mean generated length."""

    def compute(eval_pred):
        import numpy as np

        predictions, references, preds = decoded(tokenizer, eval_pred)
        out = text_metrics(predictions, references, metrics)
        special = set(tokenizer.all_special_ids)
        out["gen_len"] = float(np.mean([sum(1 for t in row if int(t) not in special) for row in preds])) if len(preds) else 0.0
        return out

    return compute


def _flatten_for(ds: Any, columns: list[str]) -> Any:
    """Hub translation sets keep pairs in one struct column (`translation: {en, fr}`): a column
    named `translation.en` reads into it (datasets' `flatten`)."""
    if any(c not in ds.column_names and c.split(".", 1)[0] in ds.column_names for c in columns if "." in c):
        return ds.flatten()
    return ds


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """pad/bos/eos/decoder_start ids for a model built around `tokenizer` (BART: decoder starts with </s>)."""
    eos = tokenizer.eos_token_id
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos,
           "decoder_start_token_id": eos, "forced_eos_token_id": eos}
    missing = [k for k, v in ids.items() if v is None]
    if missing:
        raise ConfigError(f"the tokenizer has no {listing(missing)}: a seq2seq model needs pad, bos and eos tokens")
    return ids


TASK = Task(
    name="seq2seq",
    family=Seq2SeqFamily(),
    data=SourceTarget(),
    objective=TextGeneration(),
    card=CardInfo("text2text-generation", "Text2Text Generation"),
)
