"""The classification objective, shared by text and image classification: the data's labels on the
model config, argmax accuracy / macro-F1, a top-k `predict`, and a per-class report in `eval`."""
from __future__ import annotations

from typing import Any

from ...data import Splits
from ..base import Job, Loaded, Objective, label_config, rounded
from .loops import score


def top_labels(item: str, probs: Any, id2label: dict[int, str], top_k: int) -> dict[str, Any]:
    """A classifier's `predict` result for one input: its best label and the top-k with scores."""
    values, ids = probs.topk(min(top_k, probs.numel()))
    return {
        "input": item,
        "label": id2label[int(ids[0])],
        "top": [{"label": id2label[int(i)], "score": round(float(v), 4)} for v, i in zip(values, ids)],
    }


def argmax(logits: Any, labels: Any) -> Any:
    """`preprocess_logits_for_metrics`: keep the predicted class, not the logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def compute_classification(eval_pred: Any) -> dict[str, float]:
    from ...metrics import classification_metrics

    return classification_metrics(eval_pred.predictions, eval_pred.label_ids)


class Classification(Objective):
    """Cross-entropy over the data's labels (the model's own loss)."""

    classifier = True
    loss_is_a_mean = True
    primary_metric = "accuracy"
    greater_is_better = True
    scores_modules = True  # eval.metrics may name evaluate modules: they get predicted and true label ids

    def model_config(self, job: Job) -> dict[str, Any]:
        return label_config(job.labels or [])

    def trainer_kwargs(self, job: Job, model: Any, processing: Any) -> dict[str, Any]:
        return {**super().trainer_kwargs(job, model, processing), "compute_metrics": compute_classification,
                "preprocess_logits_for_metrics": argmax}

    def metric_pairs(self, job: Job, processing: Any, eval_pred: Any) -> tuple[list[Any], list[Any]]:
        import numpy as np

        return (np.asarray(eval_pred.predictions).reshape(-1).tolist(), np.asarray(eval_pred.label_ids).reshape(-1).tolist())

    def report(self, job: Job, evaluator: Any, features: Splits) -> dict[str, Any]:
        import numpy as np

        from ...metrics import confusion_matrix, per_class_report, strip_metrics

        if not job.labels:
            return super().report(job, evaluator, features)
        pred = evaluator.predict(features.validation, metric_key_prefix="eval")
        predictions = np.asarray(pred.predictions).reshape(-1)
        references = np.asarray(pred.label_ids).reshape(-1)
        return {
            "metrics": rounded(strip_metrics(pred.metrics, "eval")),
            "labels": list(job.labels),
            "per_class": per_class_report(predictions, references, list(job.labels)),
            "confusion_matrix": confusion_matrix(predictions, references, len(job.labels)),
        }

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], top_k: int = 3, batch_size: int = 32,
                **_: Any) -> list[dict[str, Any]]:
        """The top-k labels of each input, with probabilities."""
        id2label = loaded.model.config.id2label
        results = []
        for batch, logits in score(loaded.model, inputs, lambda b: job.data.encode_inputs(job, loaded, b), batch_size):
            results += [top_labels(item, row, id2label, top_k) for item, row in zip(batch, logits.softmax(-1))]
        return results

    def format_result(self, result: dict[str, Any]) -> str:
        return f"{result['input']}\t" + "  ".join(f"{t['label']} {t['score']:.3f}" for t in result["top"])
