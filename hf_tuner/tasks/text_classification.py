"""Task `text-classification`: BERT-family sequence classification (single texts or pairs)."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from ..config import DataConfig, LabelledData
from ..data import Splits, encode_labels, finish_splits, load_splits, require_columns, require_text, tokenizer_fingerprint
from .base import CardInfo, ClassifierTask, Loaded


class TextClassificationData(LabelledData, DataConfig):
    """`data:` of text classification: a text column (and optionally a second one for pairs) and labels."""

    text_column: str = "text"
    text_pair_column: Optional[str] = None
    max_length: int = Field(128, ge=8)


class TextClassification(ClassifierTask):
    name = "text-classification"
    data_schema = TextClassificationData
    card = CardInfo("text-classification", "Text Classification")
    # batches of similar lengths: less padding (the quickstart pads 41% of a random batch)
    defaults = {"train_sampling_strategy": "group_by_length"}
    auto_model = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"  # peft then trains the classifier head fully (modules_to_save)
    tokenizer_kind = "encoder"

    def text_columns(self) -> list[str]:
        d = self.cfg.data
        return [c for c in (d.text_column, d.text_pair_column) if c]

    def load_data(self) -> Splits:
        d = self.cfg.data
        splits = load_splits(d)
        for name, ds in splits.items():
            require_columns(ds, [d.text_column, d.text_pair_column], name, splits.sources[name], ["text_column", "text_pair_column"])
        splits, self.labels = encode_labels(splits, d.label_column, d.labels)
        splits = finish_splits(splits, d, self.cfg.training.seed, stratify="labels")
        for name, ds in splits.items():
            for col in self.text_columns():
                require_text(ds, col, name)
        return splits

    def training_texts(self, splits: Splits):
        for col in self.text_columns():
            yield from splits.train[col]

    def model_config_kwargs(self, splits: Splits, processing: Any) -> dict[str, Any]:
        kwargs = super().model_config_kwargs(splits, processing)
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
        return self.tokenise(splits, tokenize, key, keep=("labels",))

    def token_lengths(self, rows: Any, processing: Any) -> list[Any]:
        from ..preflight import Lengths

        d = self.cfg.data
        ids = processing(list(rows[d.text_column]), list(rows[d.text_pair_column]) if d.text_pair_column else None)["input_ids"]
        return [Lengths("+".join(self.text_columns()), [len(x) for x in ids], d.max_length)]

    def data_collator(self, processing: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(processing, pad_to_multiple_of=None)

    def predict(self, loaded: Loaded, inputs: list[str], top_k: int = 3, batch_size: int = 32, **_: Any) -> list[dict[str, Any]]:
        tokenizer = loaded.processing

        def encode(batch: list[str]) -> dict[str, Any]:
            return tokenizer(batch, truncation=True, padding=True, return_tensors="pt")

        return self.classify(loaded, inputs, encode, top_k, batch_size)
