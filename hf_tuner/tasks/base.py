"""What a task is made of. A task is not a class to subclass: it is a `Task` value naming three
parts, each with one job, shared by every task that needs it (torchtune's recipe interfaces: small
protocols, no implementation inheritance between tasks):

- a model **family** (`Family`): the Auto class and peft task type, the tokenizer or processor and
  its fix-ups, building from scratch, loading a finished run, the merge check's probe inputs;
  it uses the one generation loop and the one scoring loop (`loops`);
- a **data** part (`DataPart`): the `data:` schema, loading and column checks (through the one
  skeleton `load_checked`), preprocessing and caching, the collator, token lengths for `plan`;
- an **objective** (`Objective`): the trainer and its arguments class, training defaults and the
  default learning rates, evaluation (in training, and the evaluator `hf-tuner eval` uses),
  artifacts, `predict`.

Parts are configured values (`PreferencePairs(tokenised=True)`), not per-run objects: their methods
take the `Job`, one task bound to one recipe, which holds the recipe and what the run learns about
itself (labels, notes, cache hits, state a part keeps between its calls). The pipeline drives them:

    job = get_task(cfg.task).bind(cfg)
    splits = job.data.load(job)                                  # columns checked, labels encoded
    processing = job.family.build_processing(job, splits)        # tokenizer / image processor
    model = job.family.load_model(job, splits, processing)       # pretrained or from scratch, LoRA
    features = job.data.preprocess(job, splits, processing)      # tokenised, cached
    trainer = job.objective.build_trainer(job, args, model, processing, features)

A part kind's base class below holds the defaults that fit most tasks; a concrete part subclasses
its kind's base only, never another concrete part (tests/test_structure.py checks it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from ..config import DataConfig, RunConfig
from ..data import Splits, load_splits, require_columns
from ..errors import ConfigError

PROBE_TEXTS = ["a quick check of the merged weights", "the second probe is a somewhat longer sentence than the first one",
               "short"]


@dataclass(frozen=True)
class CardInfo:
    """What the model card and the Hub say about a task's models."""

    pipeline_tag: str  # the Hub's pipeline tag (e.g. text-classification, text-generation)
    title: str  # the task's name in `model-index` (e.g. "Text Classification")


@dataclass
class Loaded:
    """A trained model ready to use: the model (eval mode) and its tokenizer or processor."""

    model: Any
    processing: Any
    path: str


@dataclass
class Bare:
    """An evaluator for objectives that score a model themselves (no Trainer): the model, its
    tokenizer and the arguments (batch size, generation settings)."""

    model: Any
    processing_class: Any
    args: Any


def model_of(runner: Any) -> Any:
    """The plain model behind a Trainer (unwrapped from DDP) or a `Bare` evaluator."""
    accelerator = getattr(runner, "accelerator", None)
    return accelerator.unwrap_model(runner.model) if accelerator is not None else runner.model


def as_text(value: Any) -> str:
    """A prompt or completion as plain text (conversational messages: their contents, joined)."""
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return str(value)


def rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}


def trl_setting(cfg: RunConfig, arguments: str, name: str) -> Any:
    """A value of the arguments class the recipe trains with: what `training:` sets, else the
    class's default (e.g. GRPOConfig's num_generations)."""
    from ..arguments import import_object

    extra = cfg.training.model_extra or {}
    return extra[name] if name in extra else import_object(arguments).__dataclass_fields__[name].default


# ------------------------------------------------------------------------------------------ parts


@dataclass(frozen=True, kw_only=True)
class Family:
    """A model family: which Auto class, how its tokenizer or processor is built and fixed up, how a
    model is loaded or built and made to fit its tokenizer, how a finished run is loaded. A family is
    a value with settings (the fields below; a concrete family sets its own defaults), so another head
    of a family is another value (`TextHeadFamily(auto_model=..., peft_task_type=...)`), not a class."""

    auto_model: str = ""  # the transformers Auto class, by name (imported lazily)
    processor: str = "AutoTokenizer"  # the Auto class of the saved tokenizer / processor
    peft_task_type: Optional[str] = None  # peft TaskType name, None when peft has none (ViT)
    lora_modules_to_save: tuple[str, ...] = ()  # heads to train fully next to the adapter
    needs_tokenizer: bool = True  # a model built from scratch needs a tokenizer named or trained
    two_halves: bool = False  # takes model.encoder + model.decoder (two pretrained halves)

    def auto_class(self) -> Any:
        import transformers

        return getattr(transformers, self.auto_model)

    def tokenizer_kind(self, job: "Job") -> str:
        """Special tokens of a tokenizer trained from scratch (see `modeling.train_tokenizer`)."""
        return "causal"

    def build_processing(self, job: "Job", splits: Splits) -> Any:
        """The tokenizer: the checkpoint's, another named one, or one trained on the train split."""
        from ..modeling import load_tokenizer

        tok = job.cfg.model.tokenizer
        texts = job.data.training_texts(job, splits) if tok is not None and tok.train else None
        return self.fix_processing(load_tokenizer(job.cfg.model, texts, self.tokenizer_kind(job)))

    def fix_processing(self, processing: Any) -> Any:
        """Fix-ups of a loaded tokenizer (a pad token where the family needs one)."""
        return processing

    def config_kwargs(self, job: "Job", splits: Splits, processing: Any) -> dict[str, Any]:
        """Model config values the family sets (vocabulary and special token ids of a new model)."""
        return {}

    def load_model(self, job: "Job", splits: Splits, processing: Any) -> Any:
        """The model to train: pretrained or built from scratch (`build_model`), fitted to the
        tokenizer (`fix_up`), then LoRA."""
        from ..modeling import apply_lora

        model = self.fix_up(job, self.build_model(job, splits, processing), processing)
        if job.cfg.method.name == "lora":
            model = apply_lora(model, job.cfg.method.lora, self.peft_task_type, list(self.lora_modules_to_save))
        return model

    def build_model(self, job: "Job", splits: Splits, processing: Any) -> Any:
        """The pretrained or new model, before fix-ups: the Auto class on the recipe's model config
        with the family's and the objective's config values."""
        from ..modeling import load_config_for, load_model

        kwargs = {**self.config_kwargs(job, splits, processing), **job.objective.model_config(job)}
        return load_model(self.auto_class(), job.cfg.model, load_config_for(job.cfg.model, **kwargs), notes=job.notes)

    def fix_up(self, job: "Job", model: Any, processing: Any) -> Any:
        """Make a loaded model fit its tokenizer and data (also a finished run's model in `eval`)."""
        return model

    def load_trained(self, path: str | Path, adapter: bool = False) -> Loaded:
        """A trained model from a run folder, a model folder or a Hub id (LoRA runs: the merged
        copy, or base + adapter when there is none or `adapter` is true), in eval mode."""
        from ..rundir import load_trained

        model = load_trained(self.auto_class(), path, adapter=adapter).eval()
        return Loaded(model, self.load_trained_processing(path), str(path))

    def load_trained_processing(self, path: str | Path) -> Any:
        from ..modeling import load_saved_processor

        return self.fix_processing(load_saved_processor(self.processor, path))

    def probe_inputs(self, loaded: Loaded) -> dict[str, Any]:
        """A few model inputs to compare two copies of a model on (the merge check of `push`)."""
        tokenizer = loaded.processing
        padding = tokenizer.pad_token is not None
        enc = tokenizer(PROBE_TEXTS if padding else PROBE_TEXTS[:1], padding=padding, truncation=True, max_length=32,
                        return_tensors="pt")
        inputs = dict(enc)
        if getattr(loaded.model.config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = enc["input_ids"][:, :4]
        return inputs


class DataPart:
    """A data shape: the `data:` schema, loading and checks, preprocessing, collator, and the token
    lengths `hf-tuner plan` measures."""

    schema: ClassVar[type[DataConfig]] = DataConfig
    sequences_per_example: ClassVar[int] = 1  # sequences one example puts through the model (pairs: 2)

    def check_config(self, cfg: RunConfig) -> list[str]:
        """Cross-field problems of the recipe's `data:` (each one line)."""
        return []

    def load(self, job: "Job") -> Splits:
        raise NotImplementedError

    def training_texts(self, job: "Job", splits: Splits):
        """Texts a tokenizer trained from scratch learns from (train split only)."""
        raise NotImplementedError

    def check_processing(self, job: "Job", splits: Splits, processing: Any) -> None:
        """Fail before training when the data cannot go through this tokenizer or processor (e.g.
        conversations and a tokenizer without a chat template); `validate` runs it too."""

    def preprocess(self, job: "Job", splits: Splits, processing: Any) -> Splits:
        return splits

    def show_examples(self, job: "Job", rows: Any, processing: Any) -> list[dict[str, Any]]:
        """`validate --show-examples`: rows as the model sees them, [{"text": the decoded input,
        "trained": [the substrings that carry loss, in order]}]."""
        raise ConfigError(f"--show-examples is not available for task {job.task.name} yet")

    def collator(self, job: "Job", processing: Any) -> Any:
        return None

    def defaults(self, job: "Job") -> dict[str, Any]:
        """Training arguments the data asks for (e.g. length-grouped batches), unless the recipe sets them."""
        return {}

    def check_positions(self, job: "Job", positions: int) -> None:
        """Fail before training when the sequences would not fit the model's `positions` (families
        with a learned position table call it; the default checks `data.max_length`)."""
        limit = getattr(job.cfg.data, "max_length", None)
        if limit is not None and limit > positions:
            raise ConfigError(f"data.max_length={limit} is longer than the model's {positions} positions: "
                              "lower data.max_length")

    def token_lengths(self, job: "Job", rows: Any, processing: Any) -> list[Any]:
        """Untruncated token lengths of sample rows (`data.Lengths`, one per measured field) with
        the limit the data cuts or drops them at; empty for data without token limits (images)."""
        return []

    def memory_sequence(self, job: "Job", model_config: Any, lengths: list[Any]) -> int:
        """The sequence length the largest training batch puts through the model."""
        kept = [l.longest_kept() for l in lengths]
        return max(kept) if kept else 1

    def training_rows(self, job: "Job", rows: int, lengths: list[Any]) -> int:
        """Training examples per epoch from `rows` data rows (packing and generation change it)."""
        return rows

    def match_model_labels(self, job: "Job", splits: Splits, names: Optional[list[str]], num_labels: int) -> Splits:
        """`hf-tuner eval` of a classifier: the data's label ids (a `labels` column) re-numbered to
        the model's label names (None: the model has only LABEL_0.. names, so the counts must agree)."""
        from ..data import align_labels
        from ..errors import DataError, listing

        if names:
            splits.train = splits.validation = align_labels(splits.validation, job.labels, names)
            job.labels = names
        elif len(job.labels or []) != num_labels:
            raise DataError(f"the data has {len(job.labels or [])} labels ({listing(job.labels or [])}) but the model "
                            f"has {num_labels} outputs")
        return splits

    def encode_inputs(self, job: "Job", loaded: Loaded, batch: list[str]) -> dict[str, Any]:
        """Raw `predict` inputs -> model inputs."""
        raise NotImplementedError(f"predict is not available for task {job.task.name}")


class Objective:
    """What training optimises and how a model is judged: trainer, arguments class, defaults,
    learning rates, evaluation, artifacts and `predict`."""

    arguments: ClassVar[str] = "transformers:TrainingArguments"  # `training:` keys are checked against it
    primary_metric: ClassVar[str] = "loss"  # the metric that says whether training helped
    # the built-in names `eval.metrics` may choose among (other entries name `evaluate` modules)
    metric_choices: ClassVar[tuple[str, ...]] = ()
    # `eval.metrics` may name `evaluate` modules, scored on what `metric_pairs` gives
    scores_modules: ClassVar[bool] = False
    greater_is_better: ClassVar[bool] = False
    # THE default learning rates: the method's when the recipe sets none (LoRA wants ~10x)
    learning_rates: ClassVar[dict[str, float]] = {"full": 5e-5, "lora": 5e-4}
    classifier: ClassVar[bool] = False  # predicts one of the data's labels (id2label on the model config)
    harness: ClassVar[bool] = False  # lm-evaluation-harness can evaluate its models
    # the model's loss is a plain mean that ignores `num_items_in_batch` (BERT/BART heads): the Trainer
    # must not scale it by the number of processes (see `trainer_kwargs`)
    loss_is_a_mean: ClassVar[bool] = False
    # recipe sections besides the shared ones: name -> (type, default), e.g. grpo's `reward:`
    sections: ClassVar[dict[str, tuple[Any, Any]]] = {}
    # `training:` keys `hf-tuner eval` keeps from the run's recipe (besides seed, batch size, precision)
    eval_training_keys: ClassVar[tuple[str, ...]] = ()

    def check_config(self, cfg: RunConfig) -> list[str]:
        return []

    def prepare(self, job: "Job", splits: Splits) -> None:
        """Load and check what the objective needs besides the model, once the data is loaded (GRPO:
        its rewards, each called on two held-out prompts so a broken one fails in `validate`)."""

    def metric(self, job: "Job") -> str:
        """The run's headline metric (seq2seq's depends on `eval.metrics`)."""
        return self.primary_metric

    def defaults(self, job: "Job") -> dict[str, Any]:
        """Training arguments the objective sets unless the recipe does."""
        return {}

    def model_config(self, job: "Job") -> dict[str, Any]:
        """Model config values the objective needs (a classifier's labels, a reward's one output)."""
        return {}

    def frozen_copies(self, job: "Job") -> int:
        """Extra frozen copies of the model training holds (a reference model)."""
        return 0

    def logit_share(self, job: "Job") -> float:
        """The share of positions whose vocabulary logits a training step computes (`plan`)."""
        return 1.0

    def metric_pairs(self, job: "Job", processing: Any, eval_pred: Any) -> tuple[list[Any], list[Any]]:
        """Predictions and references from the Trainer's evaluation output, as `evaluate` modules take
        them (`scores_modules` objectives: class ids, generated texts)."""
        raise NotImplementedError

    def trainer_class(self) -> Any:
        from transformers import Trainer

        return Trainer

    def trainer_kwargs(self, job: "Job", model: Any, processing: Any) -> dict[str, Any]:
        """The collator, metric functions and extra arguments of a Trainer-based objective."""
        if self.loss_is_a_mean:
            # A Trainer that thinks the model takes loss kwargs multiplies its loss by the number of
            # processes (transformers 5: `average_tokens_across_devices`); a mean loss then doubles on 2
            # processes (reported loss and gradient). Tell it the model does not take them.
            (model.get_base_model() if hasattr(model, "get_base_model") else model).accepts_loss_kwargs = False
        kwargs = {"processing_class": processing, "data_collator": job.data.collator(job, processing)}
        return {k: v for k, v in kwargs.items() if v is not None}

    def build_trainer(self, job: "Job", args: Any, model: Any, processing: Any, features: Splits) -> Any:
        """The trainer that trains on `features.train` and evaluates on `features.validation`
        (length-grouped batches under `train_sampling_strategy: group_by_length`: `sampling`)."""
        from .parts.sampling import length_grouped

        return length_grouped(self.trainer_class())(model=model, args=args, train_dataset=features.train, eval_dataset=features.validation,
                                    **with_metric_modules(job, processing, self.trainer_kwargs(job, model, processing)))

    def evaluator(self, job: "Job", args: Any, model: Any, processing: Any, features: Splits,
                  start: Optional[Any] = None) -> Any:
        """What `hf-tuner eval` evaluates a finished run's model with (`start`: the model config
        the run started from, for objectives that compare against it). Default: the task's
        Trainer in evaluation mode (no train set: transformers' own way to evaluate)."""
        return self.trainer_class()(model=model, args=args, eval_dataset=features.validation,
                                    **with_metric_modules(job, processing, self.trainer_kwargs(job, model, processing)))

    def evaluate(self, job: "Job", runner: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        """The metrics of one split (keys without prefix, no speed figures) with a trainer or an
        evaluator. `phase` says when: "before" or "after" training, or "eval" (`hf-tuner eval`)."""
        from ..metrics import strip_metrics

        return rounded(strip_metrics(runner.evaluate(eval_dataset=getattr(features, split), metric_key_prefix=split), split))

    def report(self, job: "Job", evaluator: Any, features: Splits) -> dict[str, Any]:
        """What `hf-tuner eval` reports on `features.validation`: {"metrics": {...}} and any
        extras (a classifier adds per-class figures and a confusion matrix)."""
        return {"metrics": self.evaluate(job, evaluator, features, "validation", phase="eval")}

    def write_artifacts(self, job: "Job", run_dir: Path, log_history: list[dict[str, Any]]) -> list[str]:
        """Write objective-specific files into a run folder (samples, a reward plot); their names."""
        return []

    def eval_artifacts(self, job: "Job", result_path: Path) -> list[str]:
        """Write files next to an `hf-tuner eval` result (`result_path`, its JSON): e.g. a sample sheet."""
        return []

    def predict(self, job: "Job", loaded: Loaded, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
        """Run a trained model on raw inputs; one result dict per input."""
        raise NotImplementedError(f"predict is not available for task {job.task.name}")

    def format_result(self, result: dict[str, Any]) -> str:
        """One `predict` result as the line the CLI prints."""
        return f"{result['input']}\t-> {result['output']}"


def metric_modules(objective: Objective, cfg: RunConfig) -> list[str]:
    """The `eval.metrics` entries that name `evaluate` modules: every entry that is not one of the
    objective's built-in choices (a typo of one is the objective's `check_config` error)."""
    choices = {c.lower() for c in objective.metric_choices}
    return [str(n) for n in cfg.eval.metrics or [] if str(n).strip().lower() not in choices]


def load_metric_modules(job: "Job") -> dict[str, Any]:
    """The `evaluate` modules `eval.metrics` names, loaded (`train` and `validate` load them before the
    data, so one that cannot load fails first; a finished run's `predict` and `push` never do)."""
    from ..metrics import load_metric_module

    return {name: load_metric_module(name) for name in metric_modules(job.objective, job.cfg)}


def with_metric_modules(job: "Job", processing: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Trainer arguments whose `compute_metrics` also scores the `evaluate` modules `eval.metrics`
    names (a module's result keeps its key, or becomes MODULE_KEY where the task has that key)."""
    compute = kwargs.get("compute_metrics")
    names = metric_modules(job.objective, job.cfg)
    if compute is None or not names or not job.objective.scores_modules:
        return kwargs
    from ..metrics import module_scores

    modules = load_metric_modules(job)

    def compute_with_modules(eval_pred: Any) -> dict[str, Any]:
        out = compute(eval_pred)
        predictions, references = job.objective.metric_pairs(job, processing, eval_pred)
        for module in modules.values():
            for key, value in module_scores(module, predictions, references).items():
                out[f"{module.name}_{key}" if key in out else key] = value
        return out

    return {**kwargs, "compute_metrics": compute_with_modules}


# ------------------------------------------------------------------------------------------ the task


@dataclass(frozen=True)
class Task:
    """A task: a name, the three parts it is made of, and what the Hub says of its models."""

    name: str
    family: Family
    data: DataPart
    objective: Objective
    card: CardInfo
    # the kind of model its run folders hold (empty: the task's name); runs of tasks that make one kind
    # are interchangeable starting points (a dpo run holds a causal-lm model)
    makes: str = ""
    # the kinds of model whose run folders this task may start from (model.name_or_path); empty: its own
    starts_from: tuple[str, ...] = ()

    @property
    def model_kind(self) -> str:
        return self.makes or self.name

    def may_start_from(self, other: "Task") -> bool:
        """Whether a run folder of task `other` is a starting point of this task's runs."""
        return other.model_kind in (self.starts_from or (self.model_kind,))

    @property
    def data_schema(self) -> type[DataConfig]:
        return self.data.schema

    @property
    def arguments(self) -> str:
        return self.objective.arguments

    def check_config(self, cfg: RunConfig) -> list[str]:
        """Cross-field problems of a recipe that the schema cannot see (each one line)."""
        problems = []
        if self.family.needs_tokenizer and not cfg.model.has_tokenizer_source():
            problems.append("a model built from scratch needs a tokenizer: set model.tokenizer.train=true "
                            "or model.tokenizer.name_or_path")
        if cfg.model.encoder and not self.family.two_halves:
            problems.append(f"model.encoder / model.decoder: a {self.name} model is one checkpoint: use model.name_or_path")
        modules = metric_modules(self.objective, cfg)
        if modules and not self.objective.scores_modules:
            problems.append(f"eval.metrics: a {self.name} run reports a fixed set of metrics (its main one: "
                            f"{self.objective.primary_metric}) and cannot score evaluate modules ('{modules[0]}'); "
                            "remove eval.metrics" + (f" or choose among {', '.join(self.objective.metric_choices)}"
                                                     if self.objective.metric_choices else ""))
        return problems + self.data.check_config(cfg) + self.objective.check_config(cfg)

    def bind(self, cfg: RunConfig) -> "Job":
        return Job(self, cfg)


@dataclass
class Job:
    """One task bound to one recipe: the parts' shared context for one run (or one evaluation)."""

    task: Task
    cfg: RunConfig
    labels: Optional[list[str]] = None  # a classifier's labels, in id order (set when the data loads)
    notes: list[str] = field(default_factory=list)  # one-line facts for validate / summary.json
    cache_hits: Optional[dict[str, bool]] = None  # split -> tokenised data read from the cache
    # what the parts learn about the run and keep between their calls:
    num_channels: int = 3  # image tasks: the channels the model takes (set when the model loads)
    rows_per_example: float = 1.0  # training rows one data row becomes (QA: windows per question)
    examples: dict[str, Any] = field(default_factory=dict)  # split -> untokenised rows post-processing needs (QA)
    predictions: dict[str, Any] = field(default_factory=dict)  # split -> the last evaluation's predictions (QA)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # phase -> generated samples
    rewards: Optional[list[Any]] = None  # a policy's reward functions, built once (GRPO, RLOO)
    identical_pairs: dict[str, list[bool]] = field(default_factory=dict)  # split -> its pairs truncation makes identical

    @property
    def family(self) -> Family:
        return self.task.family

    @property
    def data(self) -> DataPart:
        return self.task.data

    @property
    def objective(self) -> Objective:
        return self.task.objective

    def default_learning_rate(self) -> float:
        return self.objective.learning_rates[self.cfg.method.name]

    def training_defaults(self) -> dict[str, Any]:
        """Arguments the task sets unless the recipe does: the data's, then the objective's."""
        return {**self.data.defaults(self), **self.objective.defaults(self)}

    def facts(self) -> dict[str, Any]:
        """Facts `validate` prints and summary.json keeps (a classifier's labels)."""
        return {"labels": self.labels} if self.labels else {}

    def tokenise(self, splits: Splits, fn: Callable, key: str, what: str = "", keep: tuple[str, ...] = ()) -> Splits:
        """Map the batched `fn` over every split through the tokenised-data cache (one entry per `key`
        and split), dropping the raw columns but `keep`; records which splits came from the cache."""
        from ..data import cached_map

        hits: dict[str, bool] = {}

        def run(name: str, ds: Any) -> Any:
            out, hits[name] = cached_map(ds, fn, key, f"Tokenising {name}{what}", [c for c in ds.column_names if c not in keep])
            return out

        features = splits.map(run)
        self.cache_hits = hits
        return features


# ------------------------------------------------------------------------------------------ helpers


def load_checked(job: Job, columns: dict[str, Optional[str]] | Callable[[Splits], dict[str, Optional[str]]], *,
                 before: Optional[Callable[[str, Any], Any]] = None, after: Optional[Callable[[str, Any], Any]] = None,
                 label_column: Optional[str] = None, check: Optional[Callable[[str, Any], None]] = None) -> Splits:
    """THE load-data skeleton: load the splits, (`before`: reshape each), require the columns
    (`data.KEY` -> column; a callable decides from the loaded splits), (`after`: convert or rename),
    encode the labels of `label_column` (into `job.labels`), split off validation / test and limit
    rows, then `check` every row of every split."""
    from ..data import encode_labels, finish_splits

    d = job.cfg.data
    splits = load_splits(d)
    if before is not None:
        splits = splits.map(before)
    wanted = columns(splits) if callable(columns) else columns
    for name, ds in splits.items():
        require_columns(ds, list(wanted.values()), name, splits.sources.get(name, name), list(wanted))
    if after is not None:
        splits = splits.map(after)
    if label_column is not None:
        splits, job.labels = encode_labels(splits, label_column, getattr(d, "labels", None))
    splits = finish_splits(splits, d, job.cfg.training.seed, stratify="labels" if label_column is not None else None)
    if check is not None:
        for name, ds in splits.items():
            check(name, ds)
    return splits


def require_texts(*columns: str) -> Callable[[str, Any], None]:
    """A `load_checked` check: every row of these text columns holds a value."""
    from ..data import require_text

    def check(name: str, ds: Any) -> None:
        for column in columns:
            require_text(ds, column, name)

    return check


def ensure_pad_token(tokenizer: Any, add_eos: bool = False) -> Any:
    """THE pad fix-up of a tokenizer: a tokenizer without a pad token pads with its eos token
    (GPT-2); with `add_eos` one without an eos token first gets a new `<|endoftext|>` (the model's
    embeddings then grow in `fit_tokenizer`)."""
    if add_eos and tokenizer.eos_token is None:
        tokenizer.add_special_tokens({"eos_token": "<|endoftext|>"})
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def fit_tokenizer(model: Any, tokenizer: Any, generation: bool = False) -> Any:
    """THE resize fix-up of a model: embeddings grown to a tokenizer that gained tokens (a pad or
    eos), the pad id on its config, and with `generation` the pad and eos ids on its generation
    config (transformers 5 reads them there)."""
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    config = getattr(model, "generation_config", None)
    if generation and config is not None:
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id
    return model


def label_config(labels: list[str]) -> dict[str, Any]:
    """The model config values of a classifier over `labels` (num_labels, id2label, label2id)."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
