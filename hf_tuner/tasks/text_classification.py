"""Task `text-classification`: BERT-family sequence classification (single texts or pairs)."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from ..config import DataConfig, LabelledData
from ..data import Lengths, Splits, tokenizer_fingerprint
from .base import CardInfo, DataPart, Job, Loaded, Task, load_checked, require_texts
from .parts.classification import Classification
from .parts.families import TextHeadFamily


class TextClassificationData(LabelledData, DataConfig):
    """`data:` of text classification: a text column (and optionally a second one for pairs) and labels."""

    text_column: str = "text"
    text_pair_column: Optional[str] = None
    max_length: int = Field(128, ge=8)


class LabelledTexts(DataPart):
    """A text (or a pair of texts) and a label per row, tokenised once and padded per batch."""

    schema = TextClassificationData

    def text_columns(self, job: Job) -> list[str]:
        d = job.cfg.data
        return [c for c in (d.text_column, d.text_pair_column) if c]

    def load(self, job: Job) -> Splits:
        d = job.cfg.data
        return load_checked(job, {"text_column": d.text_column, "text_pair_column": d.text_pair_column},
                            label_column=d.label_column, check=require_texts(*self.text_columns(job)))

    def training_texts(self, job: Job, splits: Splits):
        for col in self.text_columns(job):
            yield from splits.train[col]

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        d = job.cfg.data
        text, pair = d.text_column, d.text_pair_column
        max_length = d.max_length

        def tokenize(batch):
            return processing(batch[text], batch[pair] if pair else None, truncation=True, max_length=max_length)

        key = f"text-classification|{tokenizer_fingerprint(processing)}|{text}|{pair}|{max_length}"
        return job.tokenise(splits, tokenize, key, keep=("labels",))

    def collator(self, job: Job, processing: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(processing, pad_to_multiple_of=None)

    def defaults(self, job: Job) -> dict[str, Any]:
        # batches of similar lengths: less padding (the quickstart pads 41% of a random batch)
        return {"train_sampling_strategy": "group_by_length"}

    def token_lengths(self, job: Job, rows: Any, processing: Any) -> list[Lengths]:
        d = job.cfg.data
        ids = processing(list(rows[d.text_column]), list(rows[d.text_pair_column]) if d.text_pair_column else None)["input_ids"]
        return [Lengths("+".join(self.text_columns(job)), [len(x) for x in ids], d.max_length)]

    def encode_inputs(self, job: Job, loaded: Loaded, batch: list[str]) -> dict[str, Any]:
        return loaded.processing(batch, truncation=True, padding=True, return_tensors="pt")


TASK = Task(
    name="text-classification",
    family=TextHeadFamily(),
    data=LabelledTexts(),
    objective=Classification(),
    card=CardInfo("text-classification", "Text Classification"),
    # a masked-LM run (domain adaptation) is an encoder to classify with: a new head, with a note
    starts_from=("text-classification", "masked-lm"),
)
