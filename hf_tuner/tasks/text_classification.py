"""Task `text-classification`: BERT-family sequence classification (single texts or pairs)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..data import Splits, cached_map, encode_labels, finish_splits, load_splits, require_columns, require_text, tokenizer_fingerprint
from .base import Task, label_config, top_labels


class TextClassification(Task):
    name = "text-classification"
    auto_model = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"  # peft then trains the classifier head fully (modules_to_save)
    tokenizer_kind = "encoder"
    primary_metric = "accuracy"
    classifier = True
    greater_is_better = True

    def text_columns(self) -> list[str]:
        d = self.cfg.data
        return [c for c in (d.text_column, d.text_pair_column) if c]

    def load_data(self) -> Splits:
        d = self.cfg.data
        splits = load_splits(d)
        for name, ds in splits.items():
            require_columns(ds, [d.text_column, d.text_pair_column], name, splits.sources[name], ["text_column", "text_pair_column"])
        splits, labels = encode_labels(splits, d.label_column, d.labels)
        splits = finish_splits(splits, d, self.cfg.training.seed, stratify="labels")
        for name, ds in splits.items():
            for col in self.text_columns():
                require_text(ds, col, name)
        self.info["labels"] = labels
        return splits

    def training_texts(self, splits: Splits):
        for col in self.text_columns():
            yield from splits.train[col]

    def model_config_kwargs(self, splits: Splits, processing: Any) -> dict[str, Any]:
        kwargs = label_config(self.info["labels"])
        if self.cfg.model.from_scratch is not None:
            kwargs.update(vocab_size=len(processing), pad_token_id=processing.pad_token_id)
        return kwargs

    def preprocess(self, splits: Splits, processing: Any) -> Splits:
        d = self.cfg.data
        text, pair = d.text_column, d.text_pair_column
        max_length = d.max_length

        def tokenize(batch):
            return processing(batch[text], batch[pair] if pair else None, truncation=True, max_length=max_length)

        key = f"text-classification|{tokenizer_fingerprint(processing)}|{text}|{pair}|{max_length}"
        hits = {}

        def run(name, ds):
            keep = ["labels"]
            out, hits[name] = cached_map(ds, tokenize, key, f"Tokenising {name}", [c for c in ds.column_names if c not in keep])
            return out

        features = splits.map(run)
        self.info["tokenised_from_cache"] = hits
        return features

    def data_collator(self, processing: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(processing, pad_to_multiple_of=None)

    def preprocess_logits_for_metrics(self):
        def argmax(logits, labels):
            if isinstance(logits, tuple):
                logits = logits[0]
            return logits.argmax(dim=-1)

        return argmax

    def compute_metrics(self):
        from ..metrics import classification_metrics

        def compute(eval_pred):
            return classification_metrics(eval_pred.predictions, eval_pred.label_ids)

        return compute

    @classmethod
    def predict(cls, run_dir: Path, inputs: list[str], top_k: int = 3, batch_size: int = 32, **_: Any) -> list[dict[str, Any]]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ..modeling import load_trained

        tokenizer = AutoTokenizer.from_pretrained(run_dir)
        model = load_trained(AutoModelForSequenceClassification, run_dir).eval()
        id2label = model.config.id2label
        results = []
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start:start + batch_size]
            enc = tokenizer(batch, truncation=True, padding=True, return_tensors="pt")
            with torch.no_grad():
                probs = model(**enc).logits.softmax(-1)
            results += [top_labels(text, row, id2label, top_k) for text, row in zip(batch, probs)]
        return results
