"""hf-tuner's offline metrics give the numbers `evaluate`'s metrics (scikit-learn underneath) give."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from hf_tuner import metrics


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_and_macro_f1_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, 4, size=200)
    preds = np.where(rng.random(200) < 0.6, refs, rng.integers(0, 4, size=200))
    assert metrics.accuracy(preds, refs) == pytest.approx(accuracy_score(refs, preds))
    assert metrics.macro_f1(preds, refs) == pytest.approx(f1_score(refs, preds, average="macro"))


def test_macro_f1_counts_labels_that_are_only_predicted():
    assert metrics.macro_f1([0, 2, 2], [0, 1, 1]) == pytest.approx(f1_score([0, 1, 1], [0, 2, 2], average="macro"))


def test_confusion_matrix_and_report():
    preds, refs = [0, 1, 1, 0], [0, 1, 0, 0]
    assert metrics.confusion_matrix(preds, refs, 2) == [[2, 1], [0, 1]]
    report = metrics.per_class_report(preds, refs, ["neg", "pos"])
    assert report["neg"] == {"precision": 1.0, "recall": 2 / 3, "f1": pytest.approx(0.8), "support": 3}


def test_generation_metrics_reward_better_outputs():
    refs = ["the cat sat on the mat", "le chat noir"]
    good, bad = list(refs), ["dog", "rouge"]
    assert metrics.bleu(good, refs) == pytest.approx(100.0)
    assert metrics.chrf(good, refs) > metrics.chrf(bad, refs)
    assert metrics.rouge(good, refs)["rouge1"] == pytest.approx(1.0)
    assert metrics.rouge(bad, refs)["rougeL"] < 0.2
    assert metrics.perplexity(0.0) == 1.0
