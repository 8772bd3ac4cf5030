"""Rewards for policy optimisation (`grpo`, `rloo`) and scoring texts with a reward model.

A recipe's `reward:` list names each reward as one of
- `model: PATH_OR_ID` — a reward model (a `reward-modeling` run, or any one-output sequence
  classifier): the reward is its score of prompt + completion;
- `model: PATH_OR_ID` + `label: NAME` — any sequence classifier (e.g. the quickstart sentiment run):
  the reward is the probability of that label;
- `function: module:name` or `path/to/file.py:name` — a Python function called as TRL calls reward
  functions: `f(prompts=..., completions=..., completion_ids=..., **every other data column)`
  returning one float (or None) per completion; or the name of a bundled one (`BUNDLED`:
  `shared_tags`, `repeated_words`), penalties that keep a policy from gaming its main reward;
each with a `weight`. Models are wrapped as functions that tokenise the text the way the model was
trained (its own tokenizer and special tokens), not the way TRL scores a reward *model* (logit 0 of
the policy text re-tokenised without special tokens), so a classifier whose tokenizer differs from
the policy's is scored correctly.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, model_validator

from ...errors import ConfigError, HfTunerError, did_you_mean, listing
from ..base import as_text

class RewardSpec(BaseModel):
    """One entry of a recipe's `reward:` list."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: Optional[str] = None
    label: Optional[str] = None
    function: Optional[str] = None
    weight: float = 1.0
    text: Literal["prompt+completion", "completion"] = "prompt+completion"  # what a model reward reads
    # what a model reward computes in while training (`reward_autocast`): auto = bf16 (torch.autocast)
    # on a GPU of compute capability 8+, fp32 elsewhere; bf16 / fp32 = always. Held-out completions
    # are always scored as the model was saved (fp32).
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    name: Optional[str] = None  # how metrics and logs call it (default: from the model or function)

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.model) == bool(self.function):
            raise ValueError("each reward entry sets exactly one of `model` (a reward model or classifier) and "
                             "`function` (module:name or file.py:name)")
        if self.label is not None and not self.model:
            raise ValueError("`label` goes with `model` (a classifier whose label probability is the reward)")
        if self.precision != "auto" and not self.model:
            raise ValueError("`precision` goes with `model` (what a reward model computes in); a function is plain Python")
        return self

    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.function:
            return self.function.rpartition(":")[2]
        base = Path(self.model).name or self.model
        return f"{base}:{self.label}" if self.label else base


# ------------------------------------------------------------------------------------------ models


class ModelReward:
    """A reward model or classifier as a TRL reward function. On its first call the model moves to
    the process's device (TRL moves only reward *modules*; this is a function) and its training-time
    precision is settled (`RewardSpec.precision`, `reward_autocast`: bf16 scores under autocast).
    Training steps score with the last layer computed for the first token only where the model's
    head reads nothing else (`families.first_token_last_layer`; checked against the whole model on
    the first call). `score(..., exact=True)` scores with the whole model as saved (fp32): the
    held-out completions before and after training, so that runs of any setting compare."""

    def __init__(self, spec: RewardSpec, index: int):
        from ..base import fit_tokenizer
        from .families import TextHeadFamily

        self.spec = spec
        self.__name__ = spec.display_name()
        self.family = TextHeadFamily()
        loaded = self.family.load_trained(resolve_reward_model(spec.model, index))
        self.model, self.tokenizer = fit_tokenizer(loaded.model, loaded.processing), loaded.processing
        self.label_index = label_index(self.model.config, spec, index)
        self.autocast: Any = None
        self.placed = False
        self.trim: Optional[bool] = None  # whether training steps score with the trimmed last layer; None: not checked yet

    def __call__(self, prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return self.score(prompts, completions)

    def score(self, prompts: list[Any], completions: list[Any], exact: bool = False) -> list[float]:
        if not self.placed:
            from accelerate import PartialState

            device = PartialState().device
            self.model.to(device)
            self.autocast, self.placed = reward_autocast(self.spec.precision, device), True
        texts = [as_text(c) if self.spec.text == "completion" else as_text(p) + as_text(c)
                 for p, c in zip(prompts, completions)]
        if exact:
            return self.family.scores(self.model, self.tokenizer, texts, self.label_index)
        return self.training_scores(texts)

    def training_scores(self, texts: list[str]) -> list[float]:
        """Scores at the training precision, with the trimmed last layer once the first call has
        found its logits within rounding of the whole model's (that call returns the whole model's)."""
        import contextlib

        from .families import first_token_last_layer, label_scores, trims_to_first_token

        def logits(trim: bool) -> Any:
            with first_token_last_layer(self.model) if trim else contextlib.nullcontext():
                return self.family.logits(self.model, self.tokenizer, texts, autocast=self.autocast)

        if self.trim is None:
            out = logits(False)
            tolerance = (1e-5 if self.autocast is None else 2e-2) * max(1.0, float(out.abs().max()))  # fp32 / bf16 rounding
            self.trim = trims_to_first_token(self.model) and float((logits(True) - out).abs().max()) <= tolerance
        else:
            out = logits(self.trim)
        return label_scores(out, self.label_index)


def reward_autocast(precision: str, device: Any) -> Any:
    """The dtype a model reward's training-time forward pass autocasts to (None: the model's own
    fp32). `auto` takes bf16 on a GPU that multiplies it natively (compute capability 8+) and fp32
    on a CPU: bf16 scored the quickstart MiniLM 2.5-3x faster on an AMD CPU with AVX512-BF16 but
    1.4-1.6x slower on an Intel Xeon with AVX512-BF16 and no AMX (bench/README.md), so no CPU flag
    tells which; `bf16` turns it on anywhere."""
    import torch

    if precision == "fp32":
        return None
    if precision == "bf16" or native_bf16(device):
        return torch.bfloat16
    return None


def native_bf16(device: Any) -> bool:
    """Whether `device` is a GPU doing bf16 matrix products in hardware (compute capability 8 or
    newer: Ampere, Hopper, ...)."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return False
    try:
        return torch.cuda.get_device_capability(device)[0] >= 8
    except (AttributeError, RuntimeError, AssertionError):  # no such device
        return False


def label_index(config: Any, spec: RewardSpec, index: int) -> Optional[int]:
    """The output a classifier reward reads: the index of `spec.label`, or None (logit 0) for a
    one-output reward model."""
    num_labels = int(getattr(config, "num_labels", 1))
    names = {str(v): int(k) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if spec.label is None:
        if num_labels != 1:
            raise ConfigError(f"reward[{index}]: {spec.model} is a classifier with {num_labels} labels "
                              f"({listing(names)}): say which one is rewarded with reward[{index}].label")
        return None
    if spec.label not in names:
        raise ConfigError(f"reward[{index}].label '{spec.label}' is not a label of {spec.model}"
                          f"{did_you_mean(spec.label, names)}; its labels: {listing(names)}")
    return names[spec.label]


def resolve_reward_model(name: str, index: int) -> str:
    """A reward model's folder or Hub id, checked: a run folder must be a reward model or classifier
    run; a missing local path names the recipe that makes it."""
    from ...packaged import is_packaged, resolve_model, run_folder_hint
    from ...rundir import read_json, run_task

    if is_packaged(name):
        return resolve_model(name)
    path = Path(name).expanduser()
    looks_local = name.startswith((".", "/", "~")) or path.exists() or name.count("/") > 1 or bool(run_folder_hint(name))
    if looks_local and not path.exists():
        raise ConfigError(f"reward[{index}].model: {name} does not exist{run_folder_hint(name)}")
    task = run_task(path) if path.is_dir() else None
    architectures = (read_json(path / "config.json") or {}).get("architectures") or [] if path.is_dir() else []
    if task is not None and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ConfigError(f"reward[{index}].model: {name} is a {task} run, not a reward model or classifier: "
                          f"use a reward-modeling run (e.g. `hf-tuner train tweets-reward`) or a text-classification "
                          "run with reward[].label")
    return str(path.resolve()) if path.exists() else name


# ------------------------------------------------------------------------------------------ functions


class FunctionReward:
    """A user's reward function, called with the keyword arguments it accepts, its output checked."""

    def __init__(self, spec: RewardSpec, index: int):
        self.spec = spec
        self.fn = import_function(spec.function, index)
        self.__name__ = spec.display_name()
        params = inspect.signature(self.fn).parameters.values()
        self.takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        self.accepted = {p.name for p in params}

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Optional[float]]:
        kwargs = {"prompts": prompts, "completions": completions, **kwargs}
        if not self.takes_all:
            kwargs = {k: v for k, v in kwargs.items() if k in self.accepted}
        try:
            out = self.fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a user's function: report it in one line
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise HfTunerError(f"reward function {self.spec.function} raised {type(exc).__name__}: {text}") from None
        return check_rewards(out, len(completions), self.spec.function)


def check_rewards(values: Any, expected: int, name: str) -> list[Optional[float]]:
    """A reward function's output: one float (or None) per completion."""
    try:
        values = list(values)
    except TypeError:
        raise HfTunerError(f"reward function {name} returned {type(values).__name__}, not a list of floats") from None
    if len(values) != expected:
        raise HfTunerError(f"reward function {name} returned {len(values)} values for {expected} completions: "
                           "return one float (or None) per completion")
    out: list[Optional[float]] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            raise HfTunerError(f"reward function {name} returned {v!r}, not a number") from None
    return out


# ------------------------------------------------------------------------------------- bundled functions


def words_of(text: str) -> list[str]:
    """Lower-cased words, punctuation stripped at their ends (a hashtag's # and a mention's @ kept)."""
    out = []
    for raw in text.lower().split():
        word = raw.strip(".,!?;:\"'()[]{}*…")
        if word:
            out.append(word)
    return out


TAG_STEM = 7  # characters of a tag compared (after its # or @): `#Coachella2015xyz` and `@coachellait` match


def is_tag(word: str) -> bool:
    """A hashtag or @mention (a word of `words_of`)."""
    return len(word) > 1 and word[0] in "#@"


def tag_stem(word: str) -> str:
    """`#` + the first TAG_STEM characters of a hashtag or @mention (one form for both); other words as they are."""
    return "#" + word[1:1 + TAG_STEM] if is_tag(word) else word


def shared_tags(completions: list[Any], **_: Any) -> list[float]:
    """Minus the largest share of the step's other completions that contain one of this completion's
    hashtags or @mentions (0 for a completion with none). A policy that finds one tag its reward model
    likes (a classifier that scores `#Coachella2015` positive) and puts it in every completion is
    penalised by about -1 per completion; varied tags, as tweets have them, cost little. Tags are
    compared on their first TAG_STEM characters without the # or @, so gluing characters onto the tag
    (`#Coachella2015laritin`), which a policy learns next, does not escape the penalty."""
    tags = [{tag_stem(w) for w in words_of(as_text(c)) if is_tag(w)} for c in completions]
    others = max(len(completions) - 1, 1)
    return [-max((sum(tag in other for j, other in enumerate(tags) if j != i) / others for tag in mine), default=0.0)
            for i, mine in enumerate(tags)]


def repeated_words(completions: list[Any], **_: Any) -> list[float]:
    """Minus the share of a completion's words that repeat an earlier word of the same completion
    (0 for no repeats): a penalty on the "great great great" way of gaming a reward."""
    out = []
    for c in completions:
        words = words_of(as_text(c))
        out.append(-(len(words) - len(set(words))) / len(words) if words else 0.0)
    return out


BUNDLED: dict[str, Callable[..., Any]] = {"shared_tags": shared_tags, "repeated_words": repeated_words}


def import_function(target: str, index: int) -> Callable[..., Any]:
    """A bundled function's name, `package.module:name` or `path/to/file.py:name` -> the function."""
    if target in BUNDLED:
        return BUNDLED[target]
    module_part, sep, name = target.rpartition(":")
    if not sep or not module_part or not name:
        raise ConfigError(f"reward[{index}].function '{target}' is not module:name, path/to/file.py:name or a bundled "
                          f"function ({', '.join(BUNDLED)}){did_you_mean(target, list(BUNDLED))}")
    try:
        if module_part.endswith(".py"):
            path = Path(module_part).expanduser()
            if not path.is_file():
                raise ConfigError(f"reward[{index}].function: file not found: {module_part}")
            spec = importlib.util.spec_from_file_location(f"hf_tuner_reward_{path.stem}_{index}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(module_part)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - an import error of the user's module, in one line
        raise ConfigError(f"reward[{index}].function: cannot import {module_part}: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ConfigError(f"reward[{index}].function: {module_part} has no function '{name}'{did_you_mean(name, names)}")
    return fn


def build_rewards(specs: list[RewardSpec]) -> list[Callable[..., Any]]:
    """The recipe's rewards as TRL reward functions, in order."""
    return [ModelReward(s, i) if s.model else FunctionReward(s, i) for i, s in enumerate(specs)]


def total_reward(rewards: list[Callable[..., Any]], weights: list[float], prompts: list[Any], completions: list[Any],
                 columns: Optional[dict[str, Any]] = None,
                 exact: bool = False) -> tuple[list[float], dict[str, list[Optional[float]]]]:
    """The weighted sum of every reward per completion (None counts as missing: skipped, as TRL
    does), and each reward's own values by name. `columns`: the keyword arguments reward functions
    get besides prompts and completions (data columns, completion_ids; a dict, so that a data column
    can have any name). `exact`: reward models score as saved, whatever their training-time
    precision (held-out scores)."""
    columns = columns or {}
    per: dict[str, list[Optional[float]]] = {}
    totals = [0.0] * len(completions)
    for fn, weight in zip(rewards, weights):
        if isinstance(fn, ModelReward):
            values = check_rewards(fn.score(prompts, completions, exact=exact), len(completions), fn.__name__)
        else:
            values = fn(prompts=prompts, completions=completions, **columns)
        per[fn.__name__] = values
        totals = [t + weight * v if v is not None else t for t, v in zip(totals, values)]
    return totals, per
