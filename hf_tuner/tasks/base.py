"""What every task module provides. `run.py` drives these steps for every task the same way:

    task = get_task(cfg.task)(cfg)
    splits = task.load_data()                 # raw splits, columns checked, labels encoded
    processing = task.load_processing(splits)  # tokenizer / image processor (maybe trained)
    model = task.load_model(splits, processing)    # pretrained or from scratch, then LoRA
    features = task.preprocess(splits, processing) # tokenised, cached
    trainer = task.trainer_class()(model=..., args=task.training_arguments(...), ...)

A task subclass overrides the steps it needs; the defaults here fit a tokenizer-based task.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from ..config import RunConfig
from ..data import Splits

DEFAULT_LEARNING_RATE = {"full": 5e-5, "lora": 5e-4}


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

    name: str = ""
    auto_model: str = ""  # the transformers Auto class, by name (imported lazily)
    peft_task_type: Optional[str] = None  # peft TaskType name, None when peft has none (ViT)
    lora_modules_to_save: list[str] = []  # heads to train fully next to the LoRA adapter
    tokenizer_kind: str = "causal"  # special tokens for a tokenizer trained from scratch
    primary_metric: str = "loss"  # the metric that says whether training helped
    classifier: bool = False  # predicts one of the data's labels (id2label on the model config)
    greater_is_better: bool = False

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.info: dict[str, Any] = {}  # facts for validate / summary.json (labels, cache hits...)

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
        model = load_model(self.auto_class(), self.cfg.model, config)
        model = self.after_model_load(model, processing)
        if self.cfg.method.name == "lora":
            model = apply_lora(model, self.cfg.method.lora, self.peft_task_type, self.lora_modules_to_save)
        return model

    def after_model_load(self, model: Any, processing: Any) -> Any:
        """Hook: fix up a freshly loaded model (e.g. resize embeddings to a new tokenizer)."""
        return model

    def preprocess(self, splits: Splits, processing: Any) -> Splits:
        raise NotImplementedError

    def data_collator(self, processing: Any) -> Any:
        return None

    def compute_metrics(self) -> Optional[Callable]:
        return None

    def preprocess_logits_for_metrics(self) -> Optional[Callable]:
        return None

    def default_learning_rate(self) -> float:
        return DEFAULT_LEARNING_RATE[self.cfg.method.name]

    def training_arguments_class(self) -> Any:
        from transformers import TrainingArguments

        return TrainingArguments

    def extra_training_arguments(self) -> dict[str, Any]:
        """Task-specific TrainingArguments defaults (the recipe's `training:` wins over these)."""
        return {}

    def trainer_class(self) -> Any:
        from transformers import Trainer

        return Trainer

    def trainer_kwargs(self, processing: Any) -> dict[str, Any]:
        return {}

    def extra_metrics(self, trainer: Any, features: Splits, split: str) -> dict[str, float]:
        """Metrics computed outside `trainer.evaluate` (e.g. generation). Keys without prefix."""
        return {}

    # ---- after training ----------------------------------------------------------------------
    @classmethod
    def predict(cls, run_dir: Path, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
        """Run a trained model (a run folder) on raw inputs; one result dict per input."""
        raise NotImplementedError(f"predict is not available for task {cls.name}")
