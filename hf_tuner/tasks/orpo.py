"""Task `orpo`: Odds Ratio Preference Optimisation of a causal LM on preference pairs with TRL's
`ORPOTrainer` (in `trl.experimental.orpo` in trl 1.x: TRL marks that API as unstable). One loss does
supervised fine-tuning on the chosen completion and pushes the odds of chosen over rejected apart, so
there is no reference model and no separate SFT stage. Metrics on held-out pairs are TRL's: reward
accuracy (the share of pairs whose chosen completion has the higher mean log-probability, beta times
it being ORPO's implicit reward), reward margin, the log odds ratio and the SFT loss on chosen. The
untrained model's accuracy is not 0 (unlike DPO's, whose rewards start at 0): the gain is the measure.
Batches are drawn in random order: length grouping is not measured for ORPO (bench/README.md).
"""
from __future__ import annotations

from typing import Any, Optional

from ..data import Splits
from .base import CardInfo, Job, Loaded, Objective, Task, rounded
from .parts.families import CausalLMFamily
from .parts.language import complete_prompts
from .parts.preference import PreferencePairs, evaluated_as_train, trl_pair_metrics


class ORPOObjective(Objective):
    """TRL's ORPO loss: NLL on chosen plus beta x the log odds ratio of chosen over rejected."""

    arguments = "trl.experimental.orpo:ORPOConfig"
    primary_metric = "reward_accuracy"
    greater_is_better = True
    learning_rates = {"full": 8e-6, "lora": 5e-5}  # the ORPO paper's full fine-tuning rate
    eval_training_keys = ("beta",)

    def defaults(self, job: Job) -> dict[str, Any]:
        return {"max_length": job.cfg.data.max_length, "train_sampling_strategy": "random"}

    def build_trainer(self, job: Job, args: Any, model: Any, processing: Any, features: Splits) -> Any:
        from trl.experimental.orpo import ORPOTrainer

        return ORPOTrainer(model=model, args=args, train_dataset=features.train, eval_dataset=features.validation,
                           processing_class=processing)

    def evaluator(self, job: Job, args: Any, model: Any, processing: Any, features: Splits,
                  start: Optional[Any] = None) -> Any:
        """ORPOTrainer in evaluation mode (no reference model). It insists on a train set: the
        evaluated split stands in for it, and is never trained on."""
        return self.build_trainer(job, args, model, processing, evaluated_as_train(features))

    def evaluate(self, job: Job, runner: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        # ORPOTrainer tokenises the sets it is given when it is built, and evaluates what `evaluate` is handed
        # as it is: a split other than its own goes through the same three maps first
        dataset = runner.eval_dataset if split == "validation" else tokenised_pairs(runner, getattr(features, split))
        return rounded(trl_pair_metrics(runner.evaluate(eval_dataset=dataset, metric_key_prefix="eval")))

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
        return complete_prompts(job, loaded, inputs, **options)


def tokenised_pairs(trainer: Any, dataset: Any) -> Any:
    """Pairs as ORPOTrainer's constructor prepares its data sets: the shared prompt extracted, the chat
    template applied to conversations, then its `tokenize_row`."""
    from trl.data_utils import maybe_apply_chat_template, maybe_extract_prompt

    dataset = dataset.map(maybe_extract_prompt).map(maybe_apply_chat_template,
                                                    fn_kwargs={"processing_class": trainer.processing_class})
    return dataset.map(trainer.tokenize_row)


TASK = Task(
    name="orpo",
    family=CausalLMFamily(),
    data=PreferencePairs(),
    objective=ORPOObjective(),
    card=CardInfo("text-generation", "Text Generation"),
    makes="causal-lm",
    starts_from=("causal-lm",),
)
