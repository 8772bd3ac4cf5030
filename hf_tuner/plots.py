"""The run's pictures: the loss curve of training and the confusion matrix of `eval`."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_loss(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss (and validation loss where evaluated) per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], v) for h in history for k, v in h.items() if k.endswith("eval_loss") or k == "validation_loss"]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, title: str = "") -> Path:
    """A labelled heat map of a confusion matrix (rows: true label, columns: predicted label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix)
    size = max(4.0, 0.5 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    threshold = m.max() / 2 if m.size else 0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_runs(series: list[dict[str, Any]], path: Path) -> None:
    """Several runs on one figure (`hf-tuner runs compare --plot`): training loss (lines) and
    evaluation loss (dashed, dots) per step, then one panel per main metric (runs of different tasks
    have different ones) with each run's value at each evaluation. `series`: one dict per run with
    `label`, `train_loss`, `eval_loss`, `metric` and `metric_points` ((step, value) lists)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(s["metric"] for s in series if s["metric"] and s["metric_points"]))
    fig, axes = plt.subplots(1, 1 + len(metrics), figsize=(6 * (1 + len(metrics)), 4.5), squeeze=False)
    loss_ax, metric_axes = axes[0][0], dict(zip(metrics, axes[0][1:]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, s in enumerate(series):
        color = colors[i % len(colors)]
        if s["train_loss"]:
            loss_ax.plot(*zip(*s["train_loss"]), color=color, label=f"{s['label']} train")
        if s["eval_loss"]:
            loss_ax.plot(*zip(*s["eval_loss"]), "o--", color=color, label=f"{s['label']} eval")
        if s["metric"] in metric_axes:
            metric_axes[s["metric"]].plot(*zip(*s["metric_points"]), "o-", color=color, label=s["label"])
    loss_ax.set_title("loss")
    for name, ax in metric_axes.items():
        ax.set_title(f"{name} (step 0: before training)")
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
