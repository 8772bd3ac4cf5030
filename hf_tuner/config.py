"""The recipe schema: pydantic models (unknown keys are errors), YAML loading, dotted overrides.

A recipe says *what* to tune; the task modules say *how*. This module holds the sections every
recipe shares; each task declares its own `data:` part (a `DataConfig` subclass) and names the
arguments class its `training:` keys are checked against, and `tasks.recipe_model(task)` joins
them into the schema of that task's recipes. Everything here is cheap to import (no torch, no
transformers) so that ``hf-tuner recipes list`` and ``--help`` stay fast.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from . import arguments
from .errors import ConfigError, did_you_mean

class Strict(BaseModel):
    """Base for every recipe section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class FromScratch(BaseModel):
    """`model.from_scratch`: a `model_type` plus any config overrides (n_layer, hidden_size...)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model_type: str

    def overrides(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TokenizerConfig(Strict):
    """`model.tokenizer`: use another tokenizer, or train one on the training text."""

    name_or_path: Optional[str] = None
    train: bool = False
    type: Literal["byte-level-bpe", "wordpiece"] = "byte-level-bpe"
    vocab_size: int = Field(4000, ge=100)
    min_frequency: int = Field(2, ge=1)
    chat_template: Optional[str] = None  # a Jinja chat template (or a .jinja file) for conversational data

    @model_validator(mode="after")
    def _one_source(self):
        if self.train and self.name_or_path:
            raise ValueError("set either model.tokenizer.name_or_path or model.tokenizer.train, not both")
        return self


class ModelConfig(Strict):
    """What to start from: a Hub id / local folder / `packaged:` name, or a config built from scratch."""

    name_or_path: Optional[str] = None
    revision: Optional[str] = None
    from_scratch: Optional[FromScratch] = None
    tokenizer: Optional[TokenizerConfig] = None
    image_size: Optional[int] = Field(None, ge=8)
    trust_remote_code: bool = False
    # an encoder-decoder joined from two pretrained halves (image captioning: a vision encoder, a text decoder)
    encoder: Optional[str] = None
    decoder: Optional[str] = None

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.encoder) != bool(self.decoder):
            raise ValueError("set both model.encoder and model.decoder (the two pretrained halves), or neither")
        if bool(self.name_or_path) + bool(self.from_scratch) + bool(self.encoder) != 1:
            raise ValueError(
                "set exactly one of model.name_or_path (a Hub id, a folder or packaged:NAME) "
                "and model.from_scratch (a model_type plus config values)"
                + (" (or model.encoder + model.decoder)" if self.encoder else "")
            )
        return self

    def describe(self) -> str:
        """The model a recipe starts from, in a few words."""
        if self.encoder:
            return f"{self.encoder} + {self.decoder}"
        return self.name_or_path or f"{self.from_scratch.model_type} from scratch"

    def has_tokenizer_source(self) -> bool:
        """True when a tokenizer comes with the model or is named / trained by the recipe."""
        return bool(self.name_or_path or self.decoder
                    or (self.tokenizer and (self.tokenizer.train or self.tokenizer.name_or_path)))


class DataConfig(Strict):
    """`data:` keys every task has: where the data comes from, splits and sizes. A task's own
    `data_schema` subclasses it with its columns and options (see the task modules)."""

    train: str
    validation: Optional[str] = None
    test: Optional[str] = None
    config_name: Optional[str] = None
    revision: Optional[str] = None
    train_split: str = "train"
    validation_split: Optional[str] = None
    test_split: Optional[str] = None
    encoding: Optional[str] = None
    validation_size: float = Field(0.1, gt=0, lt=1)
    test_size: Optional[float] = Field(None, gt=0, lt=1)
    max_train_samples: Optional[int] = Field(None, ge=1)
    max_eval_samples: Optional[int] = Field(None, ge=1)

    @classmethod
    def column_keys(cls) -> list[str]:
        """This task's own `data:` keys (columns and options), the ones `eval --column` may set."""
        common = set(DataConfig.model_fields) - {"encoding", "config_name", "revision"}
        return [k for k in cls.model_fields if k not in common]


class LabelledData(BaseModel):
    """`data:` keys of a classifier: the label column and which labels to keep."""

    label_column: str = "label"
    labels: Optional[list[str]] = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_strings(cls, v):
        return [str(x) for x in v] if isinstance(v, list) else v


class LoraConfig(Strict):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Optional[Union[list[str], str]] = None
    modules_to_save: Optional[list[str]] = None
    bias: Literal["none", "all", "lora_only"] = "none"

    @field_validator("target_modules", mode="before")
    @classmethod
    def _split_commas(cls, v):
        if isinstance(v, str) and v != "all-linear":
            return [m.strip() for m in v.split(",") if m.strip()]
        return v


class MethodConfig(Strict):
    name: Literal["full", "lora"] = "full"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    save_merged: bool = True


class TrainingConfig(Strict):
    """Names of the task's arguments class (`TrainingArguments` unless the task says otherwise),
    passed through. The common ones are typed here; any other real name of that class is accepted
    and type-checked by the class when the run starts. Keys left unset take the task's defaults
    (`Task.training_defaults`), then the class's own."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, protected_namespaces=())
    arguments: ClassVar[str] = "transformers:TrainingArguments"

    learning_rate: Optional[float] = Field(None, gt=0)
    num_train_epochs: float = Field(3.0, gt=0)
    max_steps: int = -1
    per_device_train_batch_size: int = Field(16, ge=1)
    per_device_eval_batch_size: int = Field(32, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: float = Field(0, ge=0)
    lr_scheduler_type: str = "linear"
    seed: int = 42
    bf16: Optional[bool] = None
    fp16: Optional[bool] = None
    eval_strategy: Literal["no", "steps", "epoch"] = "epoch"
    eval_steps: Optional[float] = None
    save_strategy: Literal["no", "steps", "epoch", "best"] = "epoch"
    save_steps: float = 500
    save_total_limit: Optional[int] = 1
    logging_steps: float = 10
    gradient_checkpointing: bool = False
    max_grad_norm: float = 1.0
    train_sampling_strategy: Optional[Literal["random", "sequential", "group_by_length", "batch_rebalance"]] = None
    report_to: Union[str, list[str]] = "none"
    dataloader_num_workers: int = Field(0, ge=0)
    use_cpu: bool = False
    load_best_model_at_end: bool = False
    metric_for_best_model: Optional[str] = None

    @model_validator(mode="after")
    def _only_argument_names(self):
        names = arguments.names_of(self.arguments)
        cls_name = arguments.class_name(self.arguments)
        for key in self.model_extra or {}:
            if key in arguments.RENAMED and key not in names:
                raise ValueError(f"'{key}' is gone from transformers 5: use {arguments.RENAMED[key]}")
            if key in arguments.OWNED:
                raise ValueError(f"'{key}' is not set in training: {arguments.OWNED[key]}")
            if key not in names:
                known = set(names) - set(arguments.OWNED)
                raise ValueError(f"'{key}' is not a {cls_name} name{did_you_mean(key, known)}")
        if self.fp16 and self.bf16:
            raise ValueError("set at most one of training.bf16 and training.fp16")
        for tracker in self.trackers():
            problem = arguments.unknown_tracker(tracker)
            if problem:
                raise ValueError(problem)
        return self

    def trackers(self) -> list[str]:
        """The `report_to` trackers, as a list ("none": empty)."""
        names = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to)
        return [str(n) for n in names if n != "none"]

    def set_by_recipe(self) -> dict[str, Any]:
        """The values the recipe (or an override) set, typed: what wins over the task's defaults."""
        values = self.model_dump(exclude_unset=True)
        return {k: v for k, v in values.items() if v is not None}


def training_model(arguments_path: str) -> type[TrainingConfig]:
    """The `training:` schema of a task whose arguments class is at `arguments_path`."""
    if arguments_path == TrainingConfig.arguments:
        return TrainingConfig
    name = arguments.class_name(arguments_path) + "Section"
    return type(name, (TrainingConfig,), {"__annotations__": {"arguments": ClassVar[str]}, "arguments": arguments_path,
                                          "__module__": __name__})


class EvalConfig(Strict):
    metrics: Optional[list[str]] = None
    before_training: bool = True
    max_new_tokens: int = Field(64, ge=1)
    num_beams: int = Field(1, ge=1)
    max_eval_generate_samples: Optional[int] = Field(None, ge=1)


class HubConfig(Strict):
    push: bool = False
    repo_id: Optional[str] = None
    private: bool = True
    revision: Optional[str] = None
    upload: Literal["merged", "adapter"] = "merged"
    commit_message: Optional[str] = None
    endpoint: Optional[str] = None
    license: Optional[str] = None

    @model_validator(mode="after")
    def _repo_when_pushing(self):
        if self.push and not self.repo_id:
            raise ValueError("hub.push is true but hub.repo_id is not set (e.g. hub.repo_id=me/my-model)")
        return self


class LaunchConfig(Strict):
    """`launch:` how `train` starts its processes; the command-line flags win over it."""

    profile: Optional[str] = None  # ddp (default), fsdp, deepspeed-zero2, deepspeed-zero3, or an accelerate config file
    num_processes: Optional[int] = Field(None, ge=1)  # of all machines together


class RunConfig(Strict):
    """A whole recipe. `data` and `training` hold the task's own schemas (see `tasks.recipe_model`)."""

    task: str
    description: str = ""
    model: ModelConfig
    data: SerializeAsAny[DataConfig]
    method: MethodConfig = Field(default_factory=MethodConfig)
    training: SerializeAsAny[TrainingConfig] = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    hub: HubConfig = Field(default_factory=HubConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    output_dir: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data (what `config.yaml` in a run folder holds)."""
        return self.model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------------------------------------
# YAML, overrides and error messages


class _RecipeLoader(yaml.SafeLoader):
    """YAML as recipes mean it: only true/false are booleans. PyYAML follows YAML 1.1, where `no`,
    `off`, `yes` and `on` are booleans too, so `training.eval_strategy=no` (how TrainingArguments
    spells it) would reach the schema as False. Boolean fields still accept those words."""


_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_RecipeLoader.add_implicit_resolver(  # 3e-5 is a float (YAML 1.1 wants 3.0e-5)
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse recipe YAML (see `_RecipeLoader`)."""
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """`a.b=value` strings -> (path, YAML-parsed value). `x=[a,b]` gives a list, `x=1e-4` a float."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not key=value (e.g. training.learning_rate=3e-5)")
        try:
            value = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and looks_like_float(value):
            value = float(value)  # YAML 1.1 reads 3e-5 as a string
        parsed.append((key.split("."), value))
    return parsed


def looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return any(c in text.lower() for c in "e.") and text.strip().lower() not in ("nan", "inf", "-inf")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in a nested dict (a copy); creates sections that are missing."""
    import copy

    data = copy.deepcopy(data)
    for path, value in parse_overrides(overrides):
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override '{'.'.join(path)}': '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a recipe file into a dict, with one-line errors for missing or malformed files."""
    if not path.is_file():
        raise ConfigError(f"recipe file not found: {path}")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a recipe: expected a mapping of sections (task:, model:, data:, ...)")
    return data


def format_validation_error(exc: ValidationError, model: type[BaseModel] = RunConfig,
                            elsewhere: Optional[dict[str, str]] = None) -> str:
    """Every pydantic error as `key.path: what is wrong`, unknown keys first (a typo in a section
    name is usually what causes the "missing key" errors after it), in one line. `elsewhere` maps
    `data:` keys of other tasks to the task that has them."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    messages: list[str] = []
    for err in errors:
        text = _describe_error(err, model, elsewhere or {})
        if text not in messages:
            messages.append(text)
    if len(messages) == 1:
        return messages[0]
    return f"{len(messages)} problems: " + "; ".join(messages)


def _describe_error(err: dict[str, Any], model: type[BaseModel], elsewhere: dict[str, str]) -> str:
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    dotted = ".".join(loc) or "recipe"
    kind = err["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(model, loc[:-1])
        where = f"in '{'.'.join(loc[:-1])}'" if loc[:-1] else "at the top level"
        if loc[:-1] == ["data"] and loc[-1] in elsewhere:
            return f"unknown key '{dotted}': it is a key of {elsewhere[loc[-1]]} data, not of this task's; valid keys: {', '.join(fields)}"
        valid = f"; valid keys: {', '.join(sorted(fields))}" if fields and len(fields) <= 24 else ""
        return f"unknown key '{dotted}' {where}{did_you_mean(loc[-1], fields)}{valid}"
    if kind == "missing":
        return f"missing required key '{dotted}'"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"'{dotted}' cannot be {err.get('input')!r}: expected {expected}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error") or kind.startswith("model_"):
        return f"{dotted}: {msg}" if loc else msg
    return f"'{dotted}' has a bad value {err.get('input')!r}: {msg}"


def _fields_at(model: Any, path: list[str]) -> list[str]:
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_of(field.annotation)
    return list(getattr(model, "model_fields", {}))


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    for meta in getattr(annotation, "__metadata__", ()) or ():  # SerializeAsAny[...] and other Annotated
        found = _model_of(meta) if isinstance(meta, type) else None
        if found is not None:
            return found
    return None


def save_config(cfg: RunConfig, path: Path) -> None:
    """Write the resolved recipe as YAML (no secrets are ever part of a RunConfig)."""
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
