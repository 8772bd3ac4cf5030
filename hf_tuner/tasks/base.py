"""What a task plug-in provides. `run.py` drives these steps for every task the same way:

    task = get_task(cfg.task)(cfg)
    splits = task.load_data()                      # raw splits, columns checked, labels encoded
    processing = task.load_processing(splits)      # tokenizer / image processor (maybe trained)
    model = task.load_model(splits, processing)    # pretrained or from scratch, then LoRA
    features = task.preprocess(splits, processing) # tokenised, cached
    trainer = task.build_trainer(args, model, processing, features.train, features.validation)

and `predict`, `eval` and `push` load a finished run through `task.load_trained(path)`. Class
attributes describe the task (its `data:` schema, its arguments class, its model card facts);
a subclass overrides the steps it needs. The defaults here fit a tokenizer-based task.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from ..config import DataConfig, RunConfig
from ..data import Splits

DEFAULT_LEARNING_RATE = {"full": 5e-5, "lora": 5e-4}
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


def label_config(labels: list[str]) -> dict[str, Any]:
    """The model config values of a classifier over `labels` (num_labels, id2label, label2id)."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}


def top_labels(item: str, probs: Any, id2label: dict[int, str], top_k: int) -> dict[str, Any]:
    """A classifier's `predict` result for one input: its best label and the top-k with scores."""
    values, ids = probs.topk(min(top_k, probs.numel()))
    return {
        "input": item,
        "label": id2label[int(ids[0])],
        "top": [{"label": id2label[int(i)], "score": round(float(v), 4)} for v, i in zip(values, ids)],
    }


class Task:
    """Base class of a task plug-in. Class attributes describe it; methods build its pieces."""

    name: ClassVar[str] = ""
    arguments: ClassVar[str] = "transformers:TrainingArguments"  # `training:` keys are checked against it
    data_schema: ClassVar[type[DataConfig]] = DataConfig  # this task's `data:` section
    card: ClassVar[CardInfo] = CardInfo("", "")
    defaults: ClassVar[dict[str, Any]] = {}  # training defaults of the task; the recipe wins
    auto_model: ClassVar[str] = ""  # the transformers Auto class, by name (imported lazily)
    needs_tokenizer: ClassVar[bool] = True  # a model built from scratch needs a tokenizer named or trained
    peft_task_type: ClassVar[Optional[str]] = None  # peft TaskType name, None when peft has none (ViT)
    lora_modules_to_save: ClassVar[list[str]] = []  # heads to train fully next to the LoRA adapter
    tokenizer_kind: ClassVar[str] = "causal"  # special tokens for a tokenizer trained from scratch
    primary_metric: str = "loss"  # the metric that says whether training helped
    greater_is_better: ClassVar[bool] = False
    classifier: ClassVar[bool] = False  # predicts one of the data's labels (id2label on the model config)
    harness: ClassVar[bool] = False  # lm-evaluation-harness can evaluate its models
    # the model's loss is a plain mean that ignores `num_items_in_batch` (BERT/BART heads): the Trainer
    # must not scale it by the number of processes (see `build_trainer`)
    loss_is_a_mean: ClassVar[bool] = False
    # recipe sections of this task besides the shared ones: name -> (type, default), e.g. grpo's `reward:`
    sections: ClassVar[dict[str, tuple[Any, Any]]] = {}
    # tasks whose run folders this task may start from (model.name_or_path); empty: its own only
    model_kinds: ClassVar[tuple[str, ...]] = ()
    # `training:` keys `hf-tuner eval` keeps from the run's recipe (besides seed, batch size, precision)
    eval_training_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.labels: Optional[list[str]] = None  # a classifier's labels, in id order (set by load_data)
        self.cache_hits: Optional[dict[str, bool]] = None  # split -> tokenised data read from the cache
        self.notes: list[str] = []  # one-line facts for validate / summary.json (e.g. a replaced head)
        self.run_cfg: Optional[RunConfig] = None  # `hf-tuner eval`: the recipe the evaluated run was trained with

    # ---- recipe ----------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: RunConfig) -> list[str]:
        """Cross-field problems of a recipe that the schema cannot see (each one line)."""
        problems = []
        if cls.needs_tokenizer and not cfg.model.has_tokenizer_source():
            problems.append("a model built from scratch needs a tokenizer: set model.tokenizer.train=true "
                            "or model.tokenizer.name_or_path")
        source = cfg.model.name_or_path
        if source and not source.startswith("packaged:"):
            from ..rundir import run_task

            kinds = cls.model_kinds or (cls.name,)
            task = run_task(Path(source).expanduser())
            if task is not None and task not in kinds:
                problems.append(f"model.name_or_path: {source} is a {task} run; a {cls.name} run starts from a "
                                f"{' / '.join(kinds)} model")
        return problems

    def facts(self) -> dict[str, Any]:
        """Task facts `validate` prints and summary.json keeps (e.g. a classifier's labels)."""
        return {"labels": self.labels} if self.labels else {}

    # ---- pieces ---------------------------------------------------------------------------
    def auto_class(self) -> Any:
        import transformers

        return getattr(transformers, self.auto_model)

    def load_data(self) -> Splits:
        raise NotImplementedError

    def training_texts(self, splits: Splits):
        """Texts a tokenizer trained from scratch learns from (train split only)."""
        raise NotImplementedError

    def load_processing(self, splits: Splits) -> Any:
        from ..modeling import load_tokenizer

        texts = self.training_texts(splits) if self.cfg.model.tokenizer and self.cfg.model.tokenizer.train else None
        return load_tokenizer(self.cfg.model, texts, self.tokenizer_kind)

    def model_config_kwargs(self, splits: Splits, processing: Any) -> dict[str, Any]:
        """Config values the task sets on the model (labels, special token ids, vocab size)."""
        return {}

    def load_model(self, splits: Splits, processing: Any) -> Any:
        from ..modeling import apply_lora, load_config_for, load_model

        config = load_config_for(self.cfg.model, **self.model_config_kwargs(splits, processing))
        model = load_model(self.auto_class(), self.cfg.model, config, notes=self.notes)
        model = self.after_model_load(model, processing)
        if self.cfg.method.name == "lora":
            model = apply_lora(model, self.cfg.method.lora, self.peft_task_type, self.lora_modules_to_save)
        return model

    def after_model_load(self, model: Any, processing: Any) -> Any:
        """Hook: fix up a freshly loaded model (e.g. resize embeddings to a new tokenizer)."""
        return model

    def preprocess(self, splits: Splits, processing: Any) -> Splits:
        raise NotImplementedError

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

    def data_collator(self, processing: Any) -> Any:
        return None

    def compute_metrics(self) -> Optional[Callable]:
        return None

    def preprocess_logits_for_metrics(self) -> Optional[Callable]:
        return None

    # ---- planning (`hf-tuner plan`) ------------------------------------------------------------
    sequences_per_example: ClassVar[int] = 1  # sequences one training example puts through the model (pairs: 2)

    def token_lengths(self, rows: Any, processing: Any) -> list[Any]:
        """Untruncated token lengths of sample rows (`preflight.Lengths`, one per measured field) with
        the limit the task cuts or drops them at, tokenised the way `preprocess` does; empty for
        tasks without token limits (images)."""
        return []

    def memory_sequence(self, model_config: Any, lengths: list[Any]) -> int:
        """The sequence length the largest training batch puts through the model."""
        kept = [l.longest_kept() for l in lengths]
        return max(kept) if kept else 1

    def frozen_copies(self) -> int:
        """Extra frozen copies of the model training holds (a reference model)."""
        return 0

    def training_rows(self, rows: int, lengths: list[Any]) -> int:
        """Training examples per epoch from `rows` data rows (packing and generation change it)."""
        return rows

    # ---- training ------------------------------------------------------------------------------
    def default_learning_rate(self) -> float:
        """The learning rate when the recipe sets none: it follows the method (LoRA wants ~10x)."""
        return DEFAULT_LEARNING_RATE[self.cfg.method.name]

    def training_defaults(self) -> dict[str, Any]:
        """Arguments the task sets unless the recipe does (`defaults`, plus what depends on the recipe)."""
        return dict(self.defaults)

    def training_arguments_class(self) -> Any:
        from ..arguments import import_object

        return import_object(self.arguments)

    def trainer_class(self) -> Any:
        from transformers import Trainer

        return Trainer

    def trainer_kwargs(self, processing: Any) -> dict[str, Any]:
        """Extra keyword arguments of the task's trainer class."""
        return {}

    def build_trainer(self, args: Any, model: Any, processing: Any, train_dataset: Any, eval_dataset: Any) -> Any:
        """The task's trainer (training and `hf-tuner eval` alike). The default passes the task's
        collator and metric functions where it has them: a trainer that takes other arguments (TRL's)
        overrides this."""
        if self.loss_is_a_mean:
            # A Trainer that thinks the model takes loss kwargs multiplies its loss by the number of
            # processes (transformers 5: `average_tokens_across_devices`); a mean loss then doubles on 2
            # processes (reported loss and gradient). Tell it the model does not take them.
            (model.get_base_model() if hasattr(model, "get_base_model") else model).accepts_loss_kwargs = False
        kwargs: dict[str, Any] = {"model": model, "args": args, "train_dataset": train_dataset,
                                  "eval_dataset": eval_dataset, "processing_class": processing}
        for key, value in (("data_collator", self.data_collator(processing)),
                           ("compute_metrics", self.compute_metrics()),
                           ("preprocess_logits_for_metrics", self.preprocess_logits_for_metrics())):
            if value is not None:
                kwargs[key] = value
        return self.trainer_class()(**kwargs, **self.trainer_kwargs(processing))

    def evaluate(self, trainer: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        """The metrics of one split (keys without prefix, no speed figures). `phase` says when:
        "before" or "after" training, or "eval" (`hf-tuner eval`)."""
        from ..metrics import strip_metrics

        metrics = strip_metrics(trainer.evaluate(eval_dataset=getattr(features, split), metric_key_prefix=split), split)
        metrics.update(self.extra_metrics(trainer, features, split))
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}

    def extra_metrics(self, trainer: Any, features: Splits, split: str) -> dict[str, float]:
        """Metrics computed outside `trainer.evaluate` (e.g. generation). Keys without prefix."""
        return {}

    def eval_report(self, trainer: Any, features: Splits) -> dict[str, Any]:
        """What `hf-tuner eval` reports on `features.validation`: {"metrics": {...}} and any
        task-specific extras (a classifier adds per-class figures and a confusion matrix)."""
        return {"metrics": self.evaluate(trainer, features, "validation", phase="eval")}

    def write_artifacts(self, run_dir: Path, log_history: list[dict[str, Any]]) -> list[str]:
        """Write task-specific files into a finished run folder (e.g. generated samples, a reward
        plot); returns their names."""
        return []

    # ---- after training ----------------------------------------------------------------------
    def load_trained(self, path: str | Path, adapter: bool = False) -> Loaded:
        """A trained model from a run folder, a model folder or a Hub id (LoRA runs: the merged
        copy, or base + adapter when there is none or `adapter` is true), in eval mode."""
        from ..rundir import load_trained

        model = load_trained(self.auto_class(), path, adapter=adapter).eval()
        return Loaded(model, self.load_trained_processing(path), str(path))

    def load_trained_processing(self, path: str | Path) -> Any:
        from ..modeling import load_processing

        return load_processing("AutoTokenizer", path)

    def predict(self, loaded: Loaded, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
        """Run a trained model on raw inputs; one result dict per input."""
        raise NotImplementedError(f"predict is not available for task {self.name}")

    def format_result(self, result: dict[str, Any]) -> str:
        """One `predict` result as the line the CLI prints."""
        return f"{result['input']}\t-> {result['output']}"

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


class ClassifierTask(Task):
    """A task whose model picks one of the data's labels: labels on the model config, argmax
    accuracy / macro-F1, a top-k `predict`, and a per-class report in `eval`."""

    classifier = True
    loss_is_a_mean = True
    primary_metric = "accuracy"
    greater_is_better = True

    def model_config_kwargs(self, splits: Splits, processing: Any) -> dict[str, Any]:
        return label_config(self.labels or [])

    def preprocess_logits_for_metrics(self) -> Optional[Callable]:
        def argmax(logits, labels):
            if isinstance(logits, tuple):
                logits = logits[0]
            return logits.argmax(dim=-1)

        return argmax

    def compute_metrics(self) -> Optional[Callable]:
        from ..metrics import classification_metrics

        def compute(eval_pred):
            return classification_metrics(eval_pred.predictions, eval_pred.label_ids)

        return compute

    def eval_report(self, trainer: Any, features: Splits) -> dict[str, Any]:
        import numpy as np

        from ..metrics import confusion_matrix, per_class_report, strip_metrics

        if not self.labels:
            return super().eval_report(trainer, features)
        pred = trainer.predict(features.validation, metric_key_prefix="eval")
        metrics = strip_metrics(pred.metrics, "eval")
        predictions = np.asarray(pred.predictions).reshape(-1)
        references = np.asarray(pred.label_ids).reshape(-1)
        return {
            "metrics": {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()},
            "labels": list(self.labels),
            "per_class": per_class_report(predictions, references, list(self.labels)),
            "confusion_matrix": confusion_matrix(predictions, references, len(self.labels)),
        }

    def classify(self, loaded: Loaded, inputs: list[str], encode: Callable[[list[str]], dict[str, Any]], top_k: int = 3,
                 batch_size: int = 32) -> list[dict[str, Any]]:
        """Top-k labels of each input; `encode` turns a batch of inputs into model inputs."""
        import torch

        id2label = loaded.model.config.id2label
        results = []
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start:start + batch_size]
            with torch.no_grad():
                probs = loaded.model(**encode(batch)).logits.softmax(-1)
            results += [top_labels(item, row, id2label, top_k) for item, row in zip(batch, probs)]
        return results

    def format_result(self, result: dict[str, Any]) -> str:
        return f"{result['input']}\t" + "  ".join(f"{t['label']} {t['score']:.3f}" for t in result["top"])
