"""Preference pairs, shared by `reward-modeling` and `dpo`: a prompt (optional: the pair may hold the
whole text, the prompt then being implicit, i.e. their common start), a chosen and a rejected
completion. Plain text or conversational (lists of {"role", "content"} messages, rendered with the
tokenizer's chat template; `model.tokenizer.chat_template` supplies one where the tokenizer has
none, e.g. GPT-2). Columns are renamed to TRL's names: prompt, chosen, rejected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from pydantic import Field

from ...config import DataConfig
from ...data import Lengths, Splits, tokenizer_fingerprint
from ...errors import ConfigError, DataError
from ..base import DataPart, Job, fit_tokenizer, load_checked
from .chat import is_conversation, require_template
from .chat import render as chat_render

STANDARD = ("prompt", "chosen", "rejected")


class PreferenceData(DataConfig):
    """`data:` of preference pairs. `prompt_column` is used when the data has that column (set it to
    null to ignore one); chosen/rejected then hold the completions, else the whole texts."""

    prompt_column: Optional[str] = "prompt"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    max_length: int = Field(512, ge=8)  # tokens of prompt + completion; longer pairs are cut at the end


@dataclass(frozen=True)
class PreferencePairs(DataPart):
    """Preference pairs with TRL's column names. `tokenised`: tokenised here, once and cached, with
    the model's own special tokens (`chosen_ids` / `rejected_ids`, what reward models train on);
    else handed on as text (DPOTrainer tokenises them itself)."""

    tokenised: bool = False
    schema = PreferenceData
    sequences_per_example = 2  # chosen and rejected go through the model together

    def load(self, job: Job) -> Splits:
        return load_pairs(job)

    def defaults(self, job: Job) -> dict[str, Any]:
        # pairs vary in length as much as the texts of the text tasks: batches of like length pad less
        # (the trainer needs `pair_length_grouped`, which reads a pair's length from its token ids)
        return {"train_sampling_strategy": "group_by_length"}

    def training_texts(self, job: Job, splits: Splits):
        for col in STANDARD:
            if col in splits.train.column_names and isinstance(splits.train[0][col], str):
                yield from splits.train[col]

    def check_processing(self, job: Job, splits: Splits, processing: Any) -> None:
        check_truncated_pairs(job, splits, processing)

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        splits = drop_truncated_pairs(job, splits, processing)
        if not self.tokenised:
            return splits
        max_length = job.cfg.data.max_length
        key = f"reward-modeling/v1|{tokenizer_fingerprint(processing)}|{max_length}"
        return job.tokenise(splits, pair_encoder(processing, max_length), key, " pairs")

    def token_lengths(self, job: Job, rows: Any, processing: Any) -> list[Lengths]:
        """Prompt + completion of each side, with the eos token training appends."""
        chosen, rejected = pair_texts(rows[:], processing)
        eos = 1 if getattr(processing, "eos_token_id", None) is not None else 0
        return [Lengths(name, [len(x) + eos for x in processing(texts, add_special_tokens=False)["input_ids"]],
                        job.cfg.data.max_length) for name, texts in (("chosen", chosen), ("rejected", rejected))]


def prompt_column_of(data: PreferenceData, column_names: list[str]) -> Optional[str]:
    """The prompt column pairs (or KTO rows) are read with, None when the prompt is implicit. A name
    other than the default must exist; the default ("prompt") is optional. (Not "was it set": a run's
    saved config.yaml sets every key, so `eval` of a run trained without prompts would fail.)"""
    prompt = data.prompt_column
    explicit = prompt is not None and prompt != PreferenceData.model_fields["prompt_column"].default
    return prompt if explicit or (prompt and prompt in column_names) else None


def standardise_columns(columns: dict[str, Optional[str]]) -> Any:
    """A `load_checked` `after` step: keep the columns `columns` maps `data.KEY` to (KEY_column -> its
    data column, None left out), named by KEY (TRL's names: prompt, chosen, completion, label, ...)."""
    def standardise(name: str, ds: Any) -> Any:
        keep = {column: key.removesuffix("_column") for key, column in columns.items() if column}
        ds = ds.remove_columns([c for c in ds.column_names if c not in keep])
        renames = {c: s for c, s in keep.items() if c != s}
        return ds.rename_columns(renames) if renames else ds

    return standardise


def load_pairs(job: Job) -> Splits:
    """The pairs of every split with columns prompt (when there is one), chosen and rejected."""
    data = job.cfg.data
    columns: dict[str, Optional[str]] = {}

    def pair_columns(splits: Splits) -> dict[str, Optional[str]]:
        columns.update(prompt_column=prompt_column_of(data, splits.train.column_names),
                       chosen_column=data.chosen_column, rejected_column=data.rejected_column)
        return columns

    return load_checked(job, pair_columns, after=standardise_columns(columns), check=check_pairs)


def check_pairs(split: str, ds: Any) -> None:
    """Every chosen/rejected value is a non-empty text or message list, and they are not all equal."""
    for col in ("chosen", "rejected"):
        for i, value in enumerate(ds[col]):
            if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
                raise DataError(f"the {split} data has an empty '{col}' value in row {i}: drop or fill such rows")
    if all(c == r for c, r in zip(ds["chosen"], ds["rejected"])):
        raise DataError(f"in the {split} data every chosen text equals its rejected text: nothing to prefer")


def render(tokenizer: Any, prompt: Any, completion: Any) -> str:
    """The text a model reads for prompt + completion: concatenated plain text, or conversational
    messages through the tokenizer's chat template."""
    if is_conversation(completion) or is_conversation(prompt):
        require_template(tokenizer)
        return chat_render(tokenizer, list(prompt or []) + list(completion))
    return (prompt or "") + completion


def pair_texts(batch: dict[str, list], tokenizer: Any) -> tuple[list[str], list[str]]:
    """(chosen texts, rejected texts) of a batch of pairs, each with its prompt."""
    prompts = batch.get("prompt") or [None] * len(batch["chosen"])
    chosen = [render(tokenizer, p, c) for p, c in zip(prompts, batch["chosen"])]
    rejected = [render(tokenizer, p, r) for p, r in zip(prompts, batch["rejected"])]
    return chosen, rejected


def identical_after_truncation(tokenizer: Any, batch: dict[str, list], max_length: int) -> list[bool]:
    """Per pair: do chosen and rejected (each with the prompt, as the model reads them) have the same
    first `max_length` tokens? Long dialogues that differ only in the last turn do, once the shared
    part fills `max_length`: such a pair teaches nothing (TRL's trainers keep the start)."""
    chosen, rejected = pair_texts(batch, tokenizer)
    ids = [tokenizer(texts, truncation=True, max_length=max_length)["input_ids"] for texts in (chosen, rejected)]
    return [c == r for c, r in zip(*ids)]


def truncated_pairs(job: Job, split: str, ds: Any, processing: Any) -> list[bool]:
    """`identical_after_truncation` of a split's pairs, computed once per split of the job: `train`
    checks them (`check_truncated_pairs`, in `prepare`) and then drops them (`drop_truncated_pairs`)."""
    if split not in job.identical_pairs:
        job.identical_pairs[split] = identical_after_truncation(processing, ds[:], job.cfg.data.max_length) if len(ds) else []
    return job.identical_pairs[split]


def check_truncated_pairs(job: Job, splits: Splits, processing: Any) -> None:
    """`validate`, `plan` and `train`: a note counting the pairs of each split that truncation makes
    identical (training drops them: `drop_truncated_pairs`), an error when no training pair is left."""
    limit = job.cfg.data.max_length
    for name, ds in splits.items():
        flags = truncated_pairs(job, name, ds, processing)
        if name == "train" and flags and all(flags):
            raise DataError(f"every train pair is identical within data.max_length={limit} tokens (chosen and rejected "
                            "differ only past it), so none teaches anything: raise data.max_length")
        if any(flags):
            job.notes.append(f"{name}: {sum(flags)} of {len(flags)} pairs are identical within data.max_length={limit} "
                             "tokens (they differ only past it) and are dropped")


def drop_truncated_pairs(job: Job, splits: Splits, processing: Any) -> Splits:
    def drop(name: str, ds: Any) -> Any:
        flags = truncated_pairs(job, name, ds, processing)
        return ds.select([i for i, same in enumerate(flags) if not same]) if any(flags) else ds

    return splits.map(drop)


def pair_encoder(tokenizer: Any, max_length: int):
    """A batched `map` function: pairs -> `chosen_ids` / `rejected_ids` with the tokenizer's special
    tokens, plus the eos token where the tokenizer ends a text with none and eos is not also the
    padding (a causal LM's classifier reads the last non-pad token: an eos that pads would be skipped)."""
    eos = tokenizer.eos_token_id
    add_eos = eos is not None and tokenizer.sep_token_id is None and eos != tokenizer.pad_token_id

    def ids_of(texts: list[str]) -> list[list[int]]:
        rows = tokenizer(texts, truncation=True, max_length=max_length - (1 if add_eos else 0))["input_ids"]
        return [ids + [eos] if add_eos and (not ids or ids[-1] != eos) else ids for ids in rows]

    def encode(batch: dict[str, list]) -> dict[str, list]:
        chosen, rejected = pair_texts(batch, tokenizer)
        return {"chosen_ids": ids_of(chosen), "rejected_ids": ids_of(rejected)}

    return encode


def pair_lengths(dataset: Any) -> list[int]:
    """Each pair's length as its padded batch pays for it: the prompt's tokens (where TRL keeps them
    apart, as DPO's `prompt_ids`) plus the longer of the chosen and rejected tokens."""
    chosen, rejected = dataset["chosen_ids"], dataset["rejected_ids"]
    prompts = dataset["prompt_ids"] if "prompt_ids" in dataset.column_names else [()] * len(chosen)
    return [len(p) + max(len(c), len(r)) for p, c, r in zip(prompts, chosen, rejected)]


def pair_length_grouped(trainer_class: Any) -> Any:
    """`trainer_class` (TRL's RewardTrainer or DPOTrainer) with `train_sampling_strategy:
    group_by_length` working on pairs. Transformers' own sampler infers lengths from an `input_ids`
    column, which tokenised pairs do not have (`chosen_ids` / `rejected_ids`), and a length column
    would be dropped as unused before the sampler sees it; TRL's trainers leave the sampler alone.
    The sampler orders pair indices, so chosen and rejected stay together."""
    from .sampling import length_grouped

    return length_grouped(trainer_class, pair_lengths, ("chosen_ids", "rejected_ids"))


# TRL's evaluation metric names of pair objectives (DPO, ORPO) -> the names hf-tuner reports
PAIR_METRIC_NAMES = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin",
                     "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected", "loss": "loss",
                     "logps/chosen": "logp_chosen", "logps/rejected": "logp_rejected",
                     "log_odds_ratio": "log_odds_ratio", "nll_loss": "nll_loss"}


def trl_pair_metrics(raw: dict[str, Any]) -> dict[str, Any]:
    """A pair trainer's `evaluate()` output (keys `eval_...`) under hf-tuner's names, speed figures dropped."""
    from ...metrics import strip_metrics

    stripped = strip_metrics(raw, "eval")
    return {PAIR_METRIC_NAMES[k]: v for k, v in stripped.items() if k in PAIR_METRIC_NAMES}


def reference_model(job: Job, start: Any, model: Any, processing: Any) -> Any:
    """The reference of a finished run's evaluation (DPO, KTO): the model the run started from (its
    `model:` section), fitted to the run's tokenizer (a pad token may have been added to it)."""
    from ...modeling import load_config_for, load_model

    if start.from_scratch is not None:
        raise ConfigError(f"this {job.task.name} run started from a model built from scratch, which was not saved: "
                          "there is no reference model to evaluate it against")
    reference = load_model(job.family.auto_class(), start, load_config_for(start, pad_token_id=model.config.pad_token_id))
    return fit_tokenizer(reference, processing).eval()


def evaluated_as_train(features: Splits) -> Splits:
    """The splits a pair trainer (DPO, ORPO, KTO) is built with to evaluate only: TRL's trainers insist on
    a train set, so the evaluated split stands in for it (and is never trained on)."""
    return Splits(features.validation, features.validation, None, dict(features.sources), list(features.notes))
