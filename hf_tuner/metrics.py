"""Offline metrics. Each gives the same numbers as the `evaluate` metric of the same name
(accuracy / f1 wrap scikit-learn, rouge wraps rouge-score, sacrebleu/chrf wrap sacrebleu), without
needing the Hub to fetch the metric scripts. Other metrics come from `evaluate` modules that
`eval.metrics` names (`load_metric_module`)."""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

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


# ------------------------------------------------------------------------------------------ entities


def tag_scheme(tags: Sequence[str]) -> str:
    """"IOB2" when every entity starts with B- (I-X only after B-X / I-X), "IOB1" when some start
    with I-, "other" for tags without B-/I- prefixes (besides O)."""
    scheme = "IOB2"
    previous = "O"
    for tag in tags:
        if tag != "O" and not tag.startswith(("B-", "I-")):
            return "other"
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            scheme = "IOB1"
        previous = tag
    return scheme


def entity_metrics(predictions: list[list[str]], references: list[list[str]]) -> dict[str, object]:
    """Entity-level precision, recall and F1 (seqeval's default, conlleval-style matching, which scores
    IOB1 and IOB2 tags alike), overall and per entity type, and token accuracy."""
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    report = classification_report(references, predictions, output_dict=True, zero_division=0)
    per_type = {name: {"precision": round(float(v["precision"]), 6), "recall": round(float(v["recall"]), 6),
                       "f1": round(float(v["f1-score"]), 6), "support": int(v["support"])}
                for name, v in report.items() if not name.endswith(" avg")}
    return {
        "precision": float(precision_score(references, predictions, zero_division=0)),
        "recall": float(recall_score(references, predictions, zero_division=0)),
        "f1": float(f1_score(references, predictions, zero_division=0)),
        "accuracy": float(accuracy_score(references, predictions)),
        "per_type": per_type,
    }


# ------------------------------------------------------------------------------------------ SQuAD


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles (a/an/the), single spaces."""
    import re
    import string

    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 of one prediction against one gold answer (v2: two empty answers agree)."""
    from collections import Counter

    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict[str, str], golds: dict[str, list[str]], version_2: bool = False) -> dict[str, float]:
    """Exact match and F1 (0-100) as the official SQuAD v1.1 / v2.0 evaluation defines them: the best
    over the gold answers; a question without a gold answer (v2) scores 1 only for an empty
    prediction. v2 adds the HasAns / NoAns breakdown."""
    em: dict[str, float] = {}
    f1: dict[str, float] = {}
    for qid, answers in golds.items():
        answers = [a for a in answers if normalize_answer(a)] or [""]
        prediction = predictions.get(qid, "")
        em[qid] = max(float(normalize_answer(prediction) == normalize_answer(a)) for a in answers)
        f1[qid] = max(answer_f1(prediction, a) for a in answers)
    out = {"exact_match": 100 * sum(em.values()) / max(len(em), 1), "f1": 100 * sum(f1.values()) / max(len(f1), 1)}
    if version_2:
        has = [q for q, answers in golds.items() if any(normalize_answer(a) for a in answers)]
        for name, ids in (("HasAns", has), ("NoAns", [q for q in golds if q not in set(has)])):
            if ids:
                out[f"{name}_exact"] = 100 * sum(em[q] for q in ids) / len(ids)
                out[f"{name}_f1"] = 100 * sum(f1[q] for q in ids) / len(ids)
                out[f"{name}_total"] = len(ids)
    return out


# ------------------------------------------------------------------------------------------ evaluate modules


@functools.lru_cache(maxsize=None)
def load_metric_module(name: str) -> Any:
    """The `evaluate` metric module `eval.metrics` names: a local module file or folder (a path:
    offline), or a name evaluate finds in its cache or on the Hub. Loaded once per process."""
    from pathlib import Path

    from .errors import ConfigError

    try:
        import evaluate
    except ImportError:
        raise ConfigError(f"eval.metrics: '{name}' is an evaluate module, and the evaluate package is not installed: "
                          "pip install evaluate") from None
    path = Path(name).expanduser()
    try:
        return evaluate.load(str(path.resolve()) if path.exists() else name)
    except Exception as exc:  # noqa: BLE001 - evaluate raises many kinds (offline, missing file, bad script)
        text = str(exc).strip().splitlines()
        raise ConfigError(f"eval.metrics: cannot load the evaluate module '{name}' ({text[0] if text else type(exc).__name__}); "
                          "offline, name a local module file or folder, or load it once online so evaluate caches "
                          "it") from None


def module_scores(module: Any, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """The numbers an `evaluate` module computes on predictions and references (its scalar results)."""
    result = module.compute(predictions=list(predictions), references=list(references)) or {}
    out = {}
    for key, value in result.items():
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out
