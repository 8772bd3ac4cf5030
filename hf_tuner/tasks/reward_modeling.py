"""Task `reward-modeling`: a one-output sequence classifier (BERT or GPT-2 family, full or LoRA)
trained on preference pairs with TRL's `RewardTrainer` to score the chosen text above the rejected.

Pairs are tokenised here, once and cached, with the model's own special tokens ([CLS] ... [SEP] for
BERT, which reads its score at [CLS]; a GPT-2 reads it at the last token that is not padding, so an
eos token is appended only where it differs from the pad token), and handed to TRL
pre-tokenised (`chosen_ids` / `rejected_ids`), so TRL's own text path, which appends an eos token
that BERT tokenizers lack, never runs. Metrics, on held-out pairs: pairwise accuracy (the share of
pairs whose chosen text scores higher), mean margin (chosen minus rejected score) and the loss
-log sigmoid(margin); computed over every pair, not averaged per batch.
"""
from __future__ import annotations

from typing import Any, Optional

from ..data import Splits
from .base import Bare, CardInfo, Job, Loaded, Objective, Task, model_of
from .parts.families import TextHeadFamily
from .parts.loops import score
from .parts.preference import PreferencePairs, pair_length_grouped


class RewardObjective(Objective):
    """TRL's `RewardTrainer`: -log sigmoid(score(chosen) - score(rejected)) on one-output models."""

    arguments = "trl:RewardConfig"
    primary_metric = "accuracy"
    greater_is_better = True

    def model_config(self, job: Job) -> dict[str, Any]:
        return {"num_labels": 1, "id2label": {0: "reward"}, "label2id": {"reward": 0}}

    def defaults(self, job: Job) -> dict[str, Any]:
        # pairs are tokenised and cut to data.max_length already; TRL would otherwise drop longer ones
        return {"max_length": None}

    def build_trainer(self, job: Job, args: Any, model: Any, processing: Any, features: Splits) -> Any:
        from trl import RewardTrainer

        return pair_length_grouped(RewardTrainer)(model=model, args=args, train_dataset=features.train, eval_dataset=features.validation,
                             processing_class=processing)

    def evaluator(self, job: Job, args: Any, model: Any, processing: Any, features: Splits,
                  start: Optional[Any] = None) -> Any:
        return Bare(model, processing, args)  # `pair_metrics` scores the pairs itself

    def evaluate(self, job: Job, runner: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        return pair_metrics(model_of(runner), getattr(features, split), runner.processing_class.pad_token_id,
                            runner.args.per_device_eval_batch_size)

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], batch_size: int = 32, **_: Any) -> list[dict[str, Any]]:
        """The reward of each text."""
        scores = job.family.scores(loaded.model, loaded.processing, list(inputs), None, batch_size, job.cfg.data.max_length)
        return [{"input": text, "score": round(s, 4)} for text, s in zip(inputs, scores)]

    def format_result(self, result: dict[str, Any]) -> str:
        return f"{result['input']}\treward {result['score']:.4f}"


def pair_metrics(model: Any, dataset: Any, pad_token_id: int, batch_size: int = 32) -> dict[str, float]:
    """Pairwise accuracy, mean margin and mean loss -log sigmoid(margin) of a reward model over every
    pair of a tokenised split (`chosen_ids`, `rejected_ids`)."""
    import torch

    device = next(model.parameters()).device

    def encode(rows: list[dict[str, Any]]) -> dict[str, Any]:  # chosen texts, then rejected texts, right-padded
        texts = [r["chosen_ids"] for r in rows] + [r["rejected_ids"] for r in rows]
        width = max(len(ids) for ids in texts)
        return {"input_ids": torch.tensor([ids + [pad_token_id] * (width - len(ids)) for ids in texts], device=device),
                "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in texts], device=device)}

    margins: list[float] = []
    for _, logits in score(model, dataset.select_columns(["chosen_ids", "rejected_ids"]).to_list(), encode, batch_size):
        chosen, rejected = logits[:, 0].chunk(2)
        margins += (chosen - rejected).tolist()
    m = torch.tensor(margins)
    return {
        "accuracy": round(float((m > 0).float().mean()), 6),
        "margin": round(float(m.mean()), 6),
        "loss": round(float(-torch.nn.functional.logsigmoid(m).mean()), 6),
        "pairs": len(margins),
    }


TASK = Task(
    name="reward-modeling",
    family=TextHeadFamily(),
    data=PreferencePairs(tokenised=True),
    objective=RewardObjective(),
    card=CardInfo("text-classification", "Text Classification"),
    starts_from=("reward-modeling", "text-classification", "causal-lm"),
)
