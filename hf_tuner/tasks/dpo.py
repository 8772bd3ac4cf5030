"""Task `dpo`: Direct Preference Optimisation of a causal LM on preference pairs with TRL's
`DPOTrainer` (no reward model). Full fine-tuning keeps a frozen copy of the starting model as the
reference; LoRA uses the same model with its adapter switched off. Metrics on held-out pairs are
TRL's: reward accuracy (the share of pairs whose chosen completion gains more log-probability over
the reference than the rejected one, i.e. an implicit reward beta*log(pi/pi_ref) ranks them right),
reward margin, and the DPO loss. A trained policy generates like any causal LM (`predict`).
"""
from __future__ import annotations

from typing import Any

from ..data import Splits
from ..errors import ConfigError
from .causal_lm import CausalLM
from .preference import PreferenceData, PreferencePairs

# TRL's eval metric names -> the names hf-tuner reports
METRIC_NAMES = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin",
                "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected", "loss": "loss",
                "logps/chosen": "logp_chosen", "logps/rejected": "logp_rejected"}
DEFAULT_LEARNING_RATE = {"full": 5e-6, "lora": 5e-5}


class DPO(PreferencePairs, CausalLM):
    name = "dpo"
    arguments = "trl:DPOConfig"
    data_schema = PreferenceData
    primary_metric = "reward_accuracy"
    greater_is_better = True
    model_kinds = ("causal-lm", "dpo", "grpo", "rloo")
    eval_training_keys = ("beta", "loss_type", "label_smoothing")

    @classmethod
    def check_config(cls, cfg) -> list[str]:
        return super(CausalLM, cls).check_config(cfg)  # CausalLM's checks are about its own data keys

    def default_learning_rate(self) -> float:
        return DEFAULT_LEARNING_RATE[self.cfg.method.name]

    def frozen_copies(self) -> int:
        return 1 if self.cfg.method.name == "full" else 0  # LoRA's reference is the adapter switched off

    def preprocess(self, splits: Splits, processing: Any) -> Splits:
        return splits  # DPOTrainer tokenises prompt / chosen / rejected itself (and caches it)

    def training_defaults(self) -> dict[str, Any]:
        return {"max_length": self.cfg.data.max_length}

    def build_trainer(self, args: Any, model: Any, processing: Any, train_dataset: Any, eval_dataset: Any) -> Any:
        from trl import DPOTrainer

        from ..modeling import is_peft

        # `hf-tuner eval` has no train split, and DPOTrainer wants one: the evaluated split stands in (never trained on)
        return DPOTrainer(model=model, ref_model=None if is_peft(model) else self.reference_model(model), args=args,
                          train_dataset=train_dataset if train_dataset is not None else eval_dataset,
                          eval_dataset=eval_dataset, processing_class=processing)

    def reference_model(self, model: Any) -> Any:
        """The frozen reference of full fine-tuning: a copy of the starting model; when evaluating a
        finished run (`hf-tuner eval`), the checkpoint that run started from."""
        import copy

        if self.run_cfg is None:
            return copy.deepcopy(model).eval()
        start = self.run_cfg.model
        if start.from_scratch is not None:
            raise ConfigError("this DPO run started from a model built from scratch, which was not saved: there is "
                              "no reference model to evaluate it against")
        from ..modeling import load_config_for, load_model

        reference = load_model(self.auto_class(), start, load_config_for(start, pad_token_id=model.config.pad_token_id))
        vocab = model.get_input_embeddings().num_embeddings
        if reference.get_input_embeddings().num_embeddings != vocab:  # a pad token was added to the tokenizer
            reference.resize_token_embeddings(vocab)
        return reference.eval()

    def evaluate(self, trainer: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        from ..metrics import strip_metrics

        raw = strip_metrics(trainer.evaluate(eval_dataset=getattr(features, split), metric_key_prefix="eval"), "eval")
        return {METRIC_NAMES[k]: round(v, 6) for k, v in raw.items() if k in METRIC_NAMES}
