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

from pathlib import Path
from typing import Any

from ..data import Splits, tokenizer_fingerprint
from .base import CardInfo, Loaded, Task
from .preference import PreferenceData, PreferencePairs, pair_texts

ENCODER_TYPES = ("bert", "roberta", "distilbert", "electra", "deberta", "deberta-v2", "xlm-roberta", "camembert")


class RewardModeling(PreferencePairs, Task):
    name = "reward-modeling"
    arguments = "trl:RewardConfig"
    data_schema = PreferenceData
    card = CardInfo("text-classification", "Text Classification")
    auto_model = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"  # the score head trains fully next to the adapter
    primary_metric = "accuracy"
    greater_is_better = True
    model_kinds = ("reward-modeling", "text-classification", "causal-lm", "dpo", "grpo", "rloo")
    eval_training_keys = ()

    @property
    def tokenizer_kind(self) -> str:  # type: ignore[override]
        scratch = self.cfg.model.from_scratch
        return "encoder" if scratch is not None and scratch.model_type in ENCODER_TYPES else "causal"

    def load_processing(self, splits: Splits) -> Any:
        tokenizer = super().load_processing(splits)
        if tokenizer.pad_token is None:  # GPT-2: pad with eos (the score is read at the last real token)
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def model_config_kwargs(self, splits: Splits, processing: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_labels": 1, "id2label": {0: "reward"}, "label2id": {"reward": 0},
                                  "pad_token_id": processing.pad_token_id}
        if self.cfg.model.from_scratch is not None:
            kwargs["vocab_size"] = len(processing)
        return kwargs

    def after_model_load(self, model: Any, processing: Any) -> Any:
        if len(processing) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(processing))
        model.config.pad_token_id = processing.pad_token_id
        return model

    def preprocess(self, splits: Splits, processing: Any) -> Splits:
        max_length = self.cfg.data.max_length
        encode = pair_encoder(processing, max_length)
        key = f"reward-modeling/v1|{tokenizer_fingerprint(processing)}|{max_length}"
        return self.tokenise(splits, encode, key, " pairs")

    def training_defaults(self) -> dict[str, Any]:
        # pairs are tokenised and cut to data.max_length already; TRL would otherwise drop longer ones
        return {"max_length": None}

    def build_trainer(self, args: Any, model: Any, processing: Any, train_dataset: Any, eval_dataset: Any) -> Any:
        if train_dataset is None:  # `hf-tuner eval`: RewardTrainer requires a train set; pair_metrics needs none
            from transformers import Trainer

            return Trainer(model=model, args=args, processing_class=processing)
        if train_dataset is None:  # `hf-tuner eval`: `evaluate` scores the pairs itself
            from transformers import Trainer

            return Trainer(model=model, args=args, processing_class=processing)
        from trl import RewardTrainer

        return RewardTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                             processing_class=processing)

    def evaluate(self, trainer: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        batch = trainer.args.per_device_eval_batch_size
        return pair_metrics(model, getattr(features, split), trainer.processing_class.pad_token_id, batch)

    # ---- after training ----------------------------------------------------------------------
    def load_trained_processing(self, path: str | Path) -> Any:
        tokenizer = super().load_trained_processing(path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def predict(self, loaded: Loaded, inputs: list[str], batch_size: int = 32, **_: Any) -> list[dict[str, Any]]:
        """The reward of each text."""
        from ..rewards import score_texts

        scores = score_texts(loaded.model, loaded.processing, list(inputs), None, batch_size, self.cfg.data.max_length)
        return [{"input": text, "score": round(score, 4)} for text, score in zip(inputs, scores)]

    def format_result(self, result: dict[str, Any]) -> str:
        return f"{result['input']}\treward {result['score']:.4f}"


def pair_encoder(tokenizer: Any, max_length: int):
    """A batched `map` function: pairs -> `chosen_ids` / `rejected_ids` with the tokenizer's special
    tokens, plus the eos token where the tokenizer ends a text with none and eos is not also the
    padding (a causal LM's classifier reads the last non-pad token: an eos that pads would be skipped)."""
    eos = tokenizer.eos_token_id
    add_eos = eos is not None and tokenizer.sep_token_id is None and eos != tokenizer.pad_token_id

    def ids_of(texts: list[str]) -> list[list[int]]:
        rows = tokenizer(texts, truncation=True, max_length=max_length - (1 if add_eos else 0))["input_ids"]
        return [ids + [eos] if add_eos and (not ids or ids[-1] != eos) else ids for ids in rows]

    def encode(batch: dict[str, list]) -> dict[str, list]:
        chosen, rejected = pair_texts(batch, tokenizer)
        return {"chosen_ids": ids_of(chosen), "rejected_ids": ids_of(rejected)}

    return encode


def pair_metrics(model: Any, dataset: Any, pad_token_id: int, batch_size: int = 32) -> dict[str, float]:
    """Pairwise accuracy, mean margin and mean loss -log sigmoid(margin) of a reward model over every
    pair of a tokenised split (`chosen_ids`, `rejected_ids`)."""
    import torch

    was_training = model.training
    model.eval()
    margins: list[float] = []
    device = next(model.parameters()).device
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start:start + batch_size]
        texts = rows["chosen_ids"] + rows["rejected_ids"]
        width = max(len(ids) for ids in texts)
        ids = torch.tensor([ids + [pad_token_id] * (width - len(ids)) for ids in texts], device=device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in texts], device=device)
        with torch.no_grad():
            scores = model(input_ids=ids, attention_mask=mask).logits[:, 0].float()
        chosen, rejected = scores.chunk(2)
        margins += (chosen - rejected).tolist()
    model.train(was_training)
    m = torch.tensor(margins)
    return {
        "accuracy": round(float((m > 0).float().mean()), 6),
        "margin": round(float(m.mean()), 6),
        "loss": round(float(-torch.nn.functional.logsigmoid(m).mean()), 6),
        "pairs": len(margins),
    }
