"""The recipe schema: pydantic models (unknown keys are errors), YAML loading, dotted overrides.

A recipe says *what* to tune; the task modules say *how*. Everything here is cheap to import
(no torch, no transformers) so that ``hf-tuner recipes list`` and ``--help`` stay fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, did_you_mean

TASKS = (
    "text-classification",
    "causal-lm",
    "seq2seq",
    "image-classification",
)

# Every `transformers.TrainingArguments` / `Seq2SeqTrainingArguments` field of transformers 5.23
# (tests/test_config.py checks this list against the installed transformers). Kept as a literal so
# that loading a recipe never imports transformers.
TRAINING_ARGUMENT_NAMES = frozenset(
    """per_device_train_batch_size num_train_epochs max_steps learning_rate lr_scheduler_type
    lr_scheduler_kwargs warmup_steps optim optim_args weight_decay adam_beta1 adam_beta2 adam_epsilon
    optim_target_modules gradient_accumulation_steps average_tokens_across_devices max_grad_norm
    label_smoothing_factor bf16 fp16 bf16_full_eval fp16_full_eval tf32 activation_checkpointing
    activation_checkpointing_kwargs gradient_checkpointing gradient_checkpointing_kwargs torch_compile
    torch_compile_backend torch_compile_mode use_liger_kernel liger_kernel_config use_cache
    neftune_noise_alpha torch_empty_cache_steps auto_find_batch_size logging_strategy logging_steps
    logging_first_step log_on_each_node logging_nan_inf_filter include_num_input_tokens_seen log_level
    log_level_replica disable_tqdm report_to run_name project trackio_space_id trackio_bucket_id
    trackio_static_space_id eval_strategy eval_steps eval_delay per_device_eval_batch_size
    prediction_loss_only eval_on_start eval_do_concat_batches eval_use_gather_object
    eval_accumulation_steps include_for_metrics batch_eval_metrics save_only_model save_strategy
    save_steps save_on_each_node save_total_limit enable_jit_checkpoint load_best_model_at_end
    metric_for_best_model greater_is_better ignore_data_skip restore_callback_states_from_checkpoint
    full_determinism seed data_seed use_cpu accelerator_config parallelism_config
    dataloader_drop_last dataloader_num_workers dataloader_pin_memory dataloader_persistent_workers
    dataloader_prefetch_factor dataloader_multiprocessing_context dataloader_in_order
    remove_unused_columns label_names train_sampling_strategy length_column_name
    ddp_find_unused_parameters ddp_bucket_cap_mb ddp_broadcast_buffers ddp_static_graph ddp_backend
    ddp_timeout fsdp fsdp_config deepspeed debug skip_memory_metrics resume_from_checkpoint
    predict_with_generate generation_config generation_num_beams sortish_sampler
    generation_max_length push_to_hub hub_token hub_private_repo hub_model_id hub_strategy
    hub_always_push hub_revision output_dir do_train do_eval do_predict local_rank""".split()
)

# TrainingArguments names that hf-tuner owns elsewhere in the recipe, with where they went.
TRAINING_ARGUMENTS_OWNED = {
    "output_dir": "use the top-level `output_dir` key or --output-dir",
    "push_to_hub": "use `hub.push: true`",
    "hub_token": "never put a token in a recipe: set HF_TOKEN or run `hf auth login`",
    "hub_model_id": "use `hub.repo_id`",
    "hub_private_repo": "use `hub.private`",
    "hub_strategy": "use the `hub:` section",
    "hub_always_push": "use the `hub:` section",
    "hub_revision": "use `hub.revision`",
    "do_train": "hf-tuner always trains in `train` and evaluates in `eval`",
    "do_eval": "set `training.eval_strategy`",
    "do_predict": "use `hf-tuner predict`",
    "local_rank": "set by the launcher",
}
# Names that used to be TrainingArguments and now have another name: answered directly.
TRAINING_ARGUMENTS_RENAMED = {
    "evaluation_strategy": "eval_strategy",
    "no_cuda": "use_cpu",
    "warmup_ratio": "warmup_steps (a float below 1 is a ratio)",
    "group_by_length": "train_sampling_strategy: group_by_length",
    "overwrite_output_dir": "the --overwrite flag of `hf-tuner train`",
}


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

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.name_or_path) == bool(self.from_scratch):
            raise ValueError(
                "set exactly one of model.name_or_path (a Hub id, a folder or packaged:NAME) "
                "and model.from_scratch (a model_type plus config values)"
            )
        if self.from_scratch and not (self.tokenizer and (self.tokenizer.train or self.tokenizer.name_or_path)):
            if self.from_scratch.model_type not in ("vit", "deit", "beit", "convnext", "resnet", "swin"):
                raise ValueError(
                    "a model built from scratch needs a tokenizer: set model.tokenizer.train=true "
                    "or model.tokenizer.name_or_path"
                )
        return self


class DataConfig(Strict):
    """Where the data comes from and which columns mean what."""

    train: str
    validation: Optional[str] = None
    test: Optional[str] = None
    config_name: Optional[str] = None
    revision: Optional[str] = None
    train_split: str = "train"
    validation_split: Optional[str] = None
    test_split: Optional[str] = None
    encoding: Optional[str] = None
    # columns
    text_column: str = "text"
    text_pair_column: Optional[str] = None
    label_column: str = "label"
    prompt_column: Optional[str] = None
    completion_column: Optional[str] = None
    source_column: str = "source"
    target_column: str = "target"
    source_prefix: str = ""
    image_column: str = "image"
    labels: Optional[list[str]] = None
    # splits and sizes
    validation_size: float = Field(0.1, gt=0, lt=1)
    test_size: Optional[float] = Field(None, gt=0, lt=1)
    max_train_samples: Optional[int] = Field(None, ge=1)
    max_eval_samples: Optional[int] = Field(None, ge=1)
    max_length: int = Field(128, ge=8)
    max_target_length: int = Field(64, ge=4)
    packing: bool = False
    augment: bool = False

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
    """`TrainingArguments` names, passed through. The common ones are typed here; any other real
    TrainingArguments name is accepted and type-checked by transformers when the run starts."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, protected_namespaces=())

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
    train_sampling_strategy: Literal["random", "sequential", "group_by_length", "batch_rebalance"] = "random"
    report_to: Union[str, list[str]] = "none"
    dataloader_num_workers: int = Field(0, ge=0)
    use_cpu: bool = False
    load_best_model_at_end: bool = False
    metric_for_best_model: Optional[str] = None

    @model_validator(mode="after")
    def _only_training_arguments(self):
        for key in self.model_extra or {}:
            if key in TRAINING_ARGUMENTS_RENAMED:
                raise ValueError(f"'{key}' is gone from transformers 5: use {TRAINING_ARGUMENTS_RENAMED[key]}")
            if key in TRAINING_ARGUMENTS_OWNED:
                raise ValueError(f"'{key}' is not set in training: {TRAINING_ARGUMENTS_OWNED[key]}")
            if key not in TRAINING_ARGUMENT_NAMES:
                known = set(TRAINING_ARGUMENT_NAMES) - set(TRAINING_ARGUMENTS_OWNED)
                raise ValueError(f"'{key}' is not a TrainingArguments name{did_you_mean(key, known)}")
        if self.fp16 and self.bf16:
            raise ValueError("set at most one of training.bf16 and training.fp16")
        return self


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


class RunConfig(Strict):
    """A whole recipe."""

    task: Literal[TASKS]  # type: ignore[valid-type]
    description: str = ""
    model: ModelConfig
    data: DataConfig
    method: MethodConfig = Field(default_factory=MethodConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    hub: HubConfig = Field(default_factory=HubConfig)
    output_dir: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data (what `config.yaml` in a run folder holds)."""
        return self.model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------------------------------------
# Loading, overrides and error messages


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """`a.b=value` strings -> (path, YAML-parsed value). `x=[a,b]` gives a list, `x=1e-4` a float."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not key=value (e.g. training.learning_rate=3e-5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _looks_like_float(value):
            value = float(value)  # YAML 1.1 reads 3e-5 as a string
        parsed.append((key.split("."), value))
    return parsed


def _looks_like_float(text: str) -> bool:
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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a recipe: expected a mapping of sections (task:, model:, data:, ...)")
    return data


def build_config(data: dict[str, Any], source: str = "recipe") -> RunConfig:
    """Validate plain data into a RunConfig, turning pydantic's report into one clear line."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def load_config(recipe: str, overrides: list[str] | None = None) -> RunConfig:
    """Recipe name or YAML path + `key=value` overrides -> validated RunConfig."""
    from .recipes import resolve_recipe

    path = resolve_recipe(recipe)
    data = apply_overrides(read_yaml(path), overrides or [])
    return build_config(data, source=str(path) if not overrides else f"{path} (with overrides)")


def format_validation_error(exc: ValidationError) -> str:
    """The first pydantic error as `key.path: what is wrong`, with a did-you-mean for unknown keys."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    dotted = ".".join(loc) or "recipe"
    kind = err["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        where = f"in '{'.'.join(loc[:-1])}'" if loc[:-1] else "at the top level"
        valid = f"; valid keys: {', '.join(sorted(fields))}" if fields and len(fields) <= 12 else ""
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


def _fields_at(path: list[str]) -> list[str]:
    model: Any = RunConfig
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
    return None


def save_config(cfg: RunConfig, path: Path) -> None:
    """Write the resolved recipe as YAML (no secrets are ever part of a RunConfig)."""
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
