"""Preference pairs, shared by `reward-modeling` and `dpo`: a prompt (optional: the pair may hold the
whole text, the prompt then being implicit, i.e. their common start), a chosen and a rejected
completion. Plain text or conversational (lists of {"role", "content"} messages, rendered with the
tokenizer's chat template; `model.tokenizer.chat_template` supplies one where the tokenizer has
none, e.g. GPT-2). Columns are renamed to TRL's names: prompt, chosen, rejected.
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from ..config import DataConfig
from ..data import Splits, finish_splits, load_splits, require_columns
from ..errors import ConfigError, DataError

STANDARD = ("prompt", "chosen", "rejected")


class PreferenceData(DataConfig):
    """`data:` of preference pairs. `prompt_column` is used when the data has that column (set it to
    null to ignore one); chosen/rejected then hold the completions, else the whole texts."""

    prompt_column: Optional[str] = "prompt"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    max_length: int = Field(512, ge=8)  # tokens of prompt + completion; longer pairs are cut at the end


class PreferencePairs:
    """Mixin of the tasks that train on preference pairs: loading them, and the texts a tokenizer
    trained from scratch learns from."""

    cfg: Any

    def load_data(self) -> Splits:
        return load_pairs(self.cfg.data, self.cfg.training.seed)

    sequences_per_example = 2  # chosen and rejected go through the model together

    def token_lengths(self, rows: Any, processing: Any) -> list[Any]:
        """Prompt + completion of each side, with the eos token training appends."""
        from ..preflight import Lengths

        chosen, rejected = pair_texts(rows[:], processing)
        eos = 1 if getattr(processing, "eos_token_id", None) is not None else 0
        return [Lengths(name, [len(x) + eos for x in processing(texts, add_special_tokens=False)["input_ids"]],
                        self.cfg.data.max_length) for name, texts in (("chosen", chosen), ("rejected", rejected))]

    def training_texts(self, splits: Splits):
        for col in STANDARD:
            if col in splits.train.column_names and isinstance(splits.train[0][col], str):
                yield from splits.train[col]


def is_conversational(value: Any) -> bool:
    """True for a list of {"role", "content"} messages."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


def load_pairs(data: PreferenceData, seed: int) -> Splits:
    """The pairs of every split with columns prompt (when there is one), chosen and rejected."""
    splits = load_splits(data)
    # a name other than the default must exist; the default ("prompt") is optional. (Not "was it set":
    # a run's saved config.yaml sets every key, so `eval` of a run trained without prompts would fail.)
    explicit = data.prompt_column is not None and data.prompt_column != PreferenceData.model_fields["prompt_column"].default
    prompt = data.prompt_column
    if prompt and prompt not in splits.train.column_names:
        if explicit:
            require_columns(splits.train, [prompt], "train", splits.sources["train"], ["prompt_column"])
        prompt = None  # the default name and no such column: the prompt is implicit
    columns = [prompt, data.chosen_column, data.rejected_column]
    for name, ds in splits.items():
        require_columns(ds, columns, name, splits.sources[name], ["prompt_column", "chosen_column", "rejected_column"])

    def standardise(name: str, ds: Any) -> Any:
        keep = {c: s for c, s in zip(columns, STANDARD) if c}
        ds = ds.remove_columns([c for c in ds.column_names if c not in keep])
        renames = {c: s for c, s in keep.items() if c != s}
        return ds.rename_columns(renames) if renames else ds

    splits = finish_splits(splits.map(standardise), data, seed)
    for name, ds in splits.items():
        check_pairs(ds, name)
    return splits


def check_pairs(ds: Any, split: str) -> None:
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
    if is_conversational(completion) or is_conversational(prompt):
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("the data is conversational (lists of messages) but the tokenizer has no chat template: "
                              "set model.tokenizer.chat_template (a Jinja template or a .jinja file)")
        messages = list(prompt or []) + list(completion)
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return (prompt or "") + completion


def pair_texts(batch: dict[str, list], tokenizer: Any) -> tuple[list[str], list[str]]:
    """(chosen texts, rejected texts) of a batch of pairs, each with its prompt."""
    prompts = batch.get("prompt") or [None] * len(batch["chosen"])
    chosen = [render(tokenizer, p, c) for p, c in zip(prompts, batch["chosen"])]
    rejected = [render(tokenizer, p, r) for p, r in zip(prompts, batch["rejected"])]
    return chosen, rejected
