"""Task `dpo`: Direct Preference Optimisation of a causal LM on preference pairs with TRL's
`DPOTrainer` (no reward model). Full fine-tuning keeps a frozen copy of the starting model as the
reference; LoRA uses the same model with its adapter switched off. Metrics on held-out pairs are
TRL's: reward accuracy (the share of pairs whose chosen completion gains more log-probability over
the reference than the rejected one, i.e. an implicit reward beta*log(pi/pi_ref) ranks them right),
reward margin, and the DPO loss. A trained policy generates like any causal LM (`predict`).
"""
from __future__ import annotations

from typing import Any, Optional

from ..data import Splits
from .base import CardInfo, Job, Loaded, Objective, Task, rounded
from .parts.families import CausalLMFamily
from .parts.language import complete_prompts
from .parts.preference import PreferencePairs, evaluated_as_train, pair_length_grouped, reference_model, trl_pair_metrics

class DPOObjective(Objective):
    """TRL's DPO loss against a frozen reference (a copy of the start, or the adapter switched off)."""

    arguments = "trl:DPOConfig"
    primary_metric = "reward_accuracy"
    greater_is_better = True
    learning_rates = {"full": 5e-6, "lora": 5e-5}
    eval_training_keys = ("beta", "loss_type", "label_smoothing")

    def frozen_copies(self, job: Job) -> int:
        return 1 if job.cfg.method.name == "full" else 0  # LoRA's reference is the adapter switched off

    def defaults(self, job: Job) -> dict[str, Any]:
        return {"max_length": job.cfg.data.max_length}

    def build_trainer(self, job: Job, args: Any, model: Any, processing: Any, features: Splits,
                      reference: Any = None) -> Any:
        import copy

        from trl import DPOTrainer

        from ..modeling import is_peft

        if reference is None and not is_peft(model):
            reference = copy.deepcopy(model).eval()
        return pair_length_grouped(DPOTrainer)(model=model, ref_model=reference, args=args, train_dataset=features.train,
                          eval_dataset=features.validation, processing_class=processing)

    def evaluator(self, job: Job, args: Any, model: Any, processing: Any, features: Splits,
                  start: Optional[Any] = None) -> Any:
        """DPOTrainer in evaluation mode, against the checkpoint the run started from (`start`; a
        plain model is its own reference). DPOTrainer insists on a train set: the evaluated split
        stands in for it, and is never trained on."""
        from ..modeling import is_peft

        reference = None if is_peft(model) or start is None else reference_model(job, start, model, processing)
        return self.build_trainer(job, args, model, processing, evaluated_as_train(features), reference)

    def evaluate(self, job: Job, runner: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        return rounded(trl_pair_metrics(runner.evaluate(eval_dataset=getattr(features, split), metric_key_prefix="eval")))

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
        return complete_prompts(job, loaded, inputs, **options)


TASK = Task(
    name="dpo",
    family=CausalLMFamily(),
    data=PreferencePairs(),
    objective=DPOObjective(),
    card=CardInfo("text-generation", "Text Generation"),
    makes="causal-lm",
    starts_from=("causal-lm",),
)
