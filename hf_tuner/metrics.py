"""Offline metrics. Each gives the same numbers as the `evaluate` metric of the same name
(accuracy / f1 wrap scikit-learn, rouge wraps rouge-score, sacrebleu/chrf wrap sacrebleu), without
needing the Hub to fetch the metric scripts."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    p, r = np.asarray(predictions), np.asarray(references)
    return float((p == r).mean()) if len(r) else 0.0


def macro_f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Macro-averaged F1 over the labels present in predictions or references (scikit-learn's rule)."""
    p, r = np.asarray(predictions), np.asarray(references)
    labels = np.union1d(p, r)
    scores = []
    for label in labels:
        tp = np.sum((p == label) & (r == label))
        fp = np.sum((p == label) & (r != label))
        fn = np.sum((p != label) & (r == label))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def classification_metrics(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    return {"accuracy": accuracy(predictions, references), "f1": macro_f1(predictions, references)}


def confusion_matrix(predictions: Sequence[int], references: Sequence[int], num_labels: int) -> list[list[int]]:
    """rows = true label, columns = predicted label."""
    m = np.zeros((num_labels, num_labels), dtype=int)
    for t, p in zip(references, predictions):
        m[int(t), int(p)] += 1
    return m.tolist()


def per_class_report(predictions: Sequence[int], references: Sequence[int], labels: list[str]) -> dict[str, dict[str, float]]:
    """precision / recall / f1 / support for each label name."""
    p, r = np.asarray(predictions), np.asarray(references)
    report = {}
    for i, name in enumerate(labels):
        tp = int(np.sum((p == i) & (r == i)))
        pred_n, true_n = int(np.sum(p == i)), int(np.sum(r == i))
        precision = tp / pred_n if pred_n else 0.0
        recall = tp / true_n if true_n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[name] = {"precision": precision, "recall": recall, "f1": f1, "support": true_n}
    return report


def perplexity(mean_loss: float) -> float:
    """exp(mean token cross-entropy), capped to stay finite in JSON."""
    return float(math.exp(min(mean_loss, 50.0)))


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measures (x100 not applied: 0..1, as `evaluate`'s rouge returns)."""
    from rouge_score import rouge_scorer, scoring

    kinds = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(kinds, use_stemmer=False)
    aggregator = scoring.BootstrapAggregator(n_samples=1000)
    np.random.seed(0)  # the bootstrap is random; fix it so a metric is reproducible
    for pred, ref in zip(predictions, references):
        aggregator.add_scores(scorer.score(ref, pred))
    result = aggregator.aggregate()
    return {k: float(result[k].mid.fmeasure) for k in kinds}


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu, 0..100) with one reference per prediction."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu, 0..100)."""
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


# Trainer metrics about speed, not quality: left out of metrics.json and summaries.
SPEED_METRICS = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time")


def strip_metrics(raw: dict, prefix: str) -> dict:
    """`{prefix}_accuracy`-style Trainer metrics -> `accuracy`, without the speed figures."""
    metrics = {k.removeprefix(f"{prefix}_"): v for k, v in raw.items() if k.startswith(f"{prefix}_")}
    return {k: v for k, v in metrics.items() if k not in SPEED_METRICS}
