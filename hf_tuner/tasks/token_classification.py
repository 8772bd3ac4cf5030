"""Task `token-classification`: a label per word (named entities, part-of-speech tags, chunks) with a
BERT-family encoder, as `run_ner.py` does it.

Rows hold a list of words and a list of tags (strings, or ids with names from a Hub `ClassLabel` or
`data.labels`). JSON / JSONL / Parquet files with list columns, Hub data sets, and CoNLL text files
(`.conll`, `.iob`, `.bio`, or `.txt` with `data.format: conll`) load alike. Words are tokenised into
sub-words once (cached); a word's label goes on its first sub-word, -100 on special tokens and on
the later sub-words (with `data.label_all_tokens`, those get the word's label, B-X as I-X). Metrics:
entity-level precision / recall / F1 from `seqeval` (its default conlleval-style matching, which
scores IOB1 and IOB2 tags alike: the run notes which scheme the data uses), per entity type in
`eval`, and token accuracy. `predict` groups a word's first sub-word predictions into entities as
the token-classification pipeline's "first" aggregation does, with character offsets.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator

from ..config import DataConfig
from ..data import Lengths, Splits, tokenizer_fingerprint
from ..errors import ConfigError, DataError, listing
from .base import CardInfo, DataPart, Job, Loaded, Objective, Task, label_config, load_checked, rounded
from .parts.classification import argmax
from .parts.families import TextHeadFamily
from .parts.loops import score

IGNORE = -100


class TokenClassificationData(DataConfig):
    """`data:` of token classification: words and their tags per row."""

    tokens_column: str = "tokens"
    tags_column: str = "ner_tags"
    labels: Optional[list[str]] = None  # tag names in id order (needed when the tags are bare ids)
    label_all_tokens: bool = False
    max_length: int = Field(128, ge=8)
    format: Optional[Literal["conll"]] = None  # read a .txt file as CoNLL

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_strings(cls, v):
        return [str(x) for x in v] if isinstance(v, list) else v


def sort_tags(tags: set[str]) -> list[str]:
    """Tag names in a stable order: O first, then by entity type, B- before I-."""
    def key(tag: str) -> tuple:
        if tag == "O":
            return (0, "", "")
        prefix, _, kind = tag.partition("-")
        return (1, kind or prefix, prefix) if kind else (1, tag, "")
    return sorted(tags, key=key)


def tag_names(job: Job, splits: Splits) -> list[str]:
    """The tag set, in id order: `data.labels`, else the Hub ClassLabel names, else sorted from the data."""
    d = job.cfg.data
    feature = splits.train.features[d.tags_column]
    inner = getattr(feature, "feature", None)
    if d.labels:
        return list(d.labels)
    if inner is not None and hasattr(inner, "names"):
        return list(inner.names)
    seen: set[str] = set()
    for name, ds in splits.items():
        for row in ds[d.tags_column]:
            if row and not isinstance(row[0], str):
                raise ConfigError(f"the {name} data's tags are ids without names: list the tag names in id order "
                                  "in data.labels (e.g. [O, B-PER, I-PER])")
            seen.update(row)
    return sort_tags(seen)


def encode_tags(job: Job, splits: Splits) -> Splits:
    """Check every row (as many tags as words; tags known) and add `tag_ids`."""
    d = job.cfg.data
    names = tag_names(job, splits)
    ids = {name: i for i, name in enumerate(names)}
    job.labels = names

    def encode(split: str, ds: Any) -> Any:
        out = []
        for i, (words, tags) in enumerate(zip(ds[d.tokens_column], ds[d.tags_column])):
            if words is None or tags is None or len(words) != len(tags):
                raise DataError(f"row {i} of the {split} data has {len(words or [])} words but {len(tags or [])} tags "
                                f"({d.tokens_column} / {d.tags_column}): give one tag per word")
            row = []
            for tag in tags:
                if isinstance(tag, str):
                    if tag not in ids:
                        raise DataError(f"tag '{tag}' in row {i} of the {split} data is not in data.labels "
                                        f"({listing(names)}): add it, or fix the row")
                    row.append(ids[tag])
                else:
                    if not 0 <= int(tag) < len(names):
                        raise DataError(f"tag id {tag} in row {i} of the {split} data is not an index of the "
                                        f"{len(names)} tag names: fix data.labels")
                    row.append(int(tag))
            out.append(row)
        return ds.add_column("tag_ids", out)

    return splits.map(encode)


def align_labels(word_ids: list[Optional[int]], tags: list[int], names: list[str], label_all_tokens: bool) -> list[int]:
    """Sub-word labels from word labels (`word_ids()` of one row): -100 on special tokens; a word's
    tag on its first sub-word; on its later sub-words -100, or with `label_all_tokens` the word's tag
    (B-X as I-X, as `run_ner.py` does)."""
    inside = {i: names.index("I-" + n[2:]) for i, n in enumerate(names) if n.startswith("B-") and "I-" + n[2:] in names}
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE)
        elif word != previous:
            labels.append(tags[word])
        else:
            labels.append(inside.get(tags[word], tags[word]) if label_all_tokens else IGNORE)
        previous = word
    return labels


class TaggedWords(DataPart):
    """Words and a tag per word; sub-word labels aligned through the fast tokenizer's `word_ids()`."""

    schema = TokenClassificationData

    def load(self, job: Job) -> Splits:
        from ..metrics import tag_scheme

        d = job.cfg.data
        splits = encode_tags(job, load_checked(job, {"tokens_column": d.tokens_column, "tags_column": d.tags_column}))
        scheme = tag_scheme([t for row in splits.train["tag_ids"][:2000] for t in [job.labels[i] for i in row] + ["O"]])
        job.notes.append(f"tags: {len(job.labels)} ({scheme} scheme); entities are scored with seqeval's default "
                         "(conlleval-style) matching")
        return splits

    def training_texts(self, job: Job, splits: Splits):
        yield from (" ".join(words) for words in splits.train[job.cfg.data.tokens_column])

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        if not getattr(processing, "is_fast", False):
            raise ConfigError("token classification needs a fast tokenizer (its word_ids() align tags to sub-words): "
                              "use a model with a tokenizer.json, or model.tokenizer.train=true")
        d = job.cfg.data
        words_column, max_length, all_tokens, names = d.tokens_column, d.max_length, d.label_all_tokens, list(job.labels)

        def tokenize(batch):
            enc = processing(batch[words_column], is_split_into_words=True, truncation=True, max_length=max_length)
            enc["labels"] = [align_labels(enc.word_ids(i), tags, names, all_tokens) for i, tags in enumerate(batch["tag_ids"])]
            return enc

        key = f"token-classification|{tokenizer_fingerprint(processing)}|{words_column}|{max_length}|{all_tokens}|{names}"
        return job.tokenise(splits, tokenize, key)

    def collator(self, job: Job, processing: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(processing)

    def defaults(self, job: Job) -> dict[str, Any]:
        # random order: length-grouped batches (1.5x the samples/s) cost ner-tweets 0.052 +- 0.035 entity F1
        # over 3 seeds even with their order shuffled (bench/README.md, "Length-grouped batches and quality");
        # `training.train_sampling_strategy: group_by_length` still chooses them
        return {"train_sampling_strategy": "random"}

    def token_lengths(self, job: Job, rows: Any, processing: Any) -> list[Lengths]:
        d = job.cfg.data
        ids = processing([list(w) for w in rows[d.tokens_column]], is_split_into_words=True)["input_ids"]
        return [Lengths(d.tokens_column, [len(x) for x in ids], d.max_length)]

    def match_model_labels(self, job: Job, splits: Splits, names: Optional[list[str]], num_labels: int) -> Splits:
        if not names:
            return super().match_model_labels(job, splits, names, num_labels)
        index = {name: i for i, name in enumerate(names)}
        missing = sorted({job.labels[t] for row in splits.validation["tag_ids"] for t in row} - set(index))
        if missing:
            raise DataError(f"the data has tags the model does not know: {listing(missing)}; its tags: {listing(names)}")
        ids = [[index[job.labels[t]] for t in row] for row in splits.validation["tag_ids"]]
        ds = splits.validation.remove_columns("tag_ids").add_column("tag_ids", ids)
        splits.train = splits.validation = ds
        job.labels = names
        return splits

    def encode_inputs(self, job: Job, loaded: Loaded, batch: list[str]) -> dict[str, Any]:
        return loaded.processing(batch, truncation=True, max_length=job.cfg.data.max_length, padding=True,
                                 return_offsets_mapping=True, return_tensors="pt")


def first_subword_tags(predictions: Any, labels: Any, names: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """(predicted tags, reference tags) per row, on the positions that carry a label."""
    preds, refs = [], []
    for pred_row, label_row in zip(predictions, labels):
        keep = [(int(p), int(l)) for p, l in zip(pred_row, label_row) if l != IGNORE]
        preds.append([names[p] for p, _ in keep])
        refs.append([names[l] for _, l in keep])
    return preds, refs


class EntityTagging(Objective):
    """Cross-entropy per sub-word; seqeval entity P / R / F1 and token accuracy."""

    classifier = True
    loss_is_a_mean = True
    primary_metric = "f1"
    greater_is_better = True

    def model_config(self, job: Job) -> dict[str, Any]:
        return label_config(job.labels or [])

    def trainer_kwargs(self, job: Job, model: Any, processing: Any) -> dict[str, Any]:
        names = list(job.labels or [])

        def compute(eval_pred):
            from ..metrics import entity_metrics

            metrics = entity_metrics(*first_subword_tags(eval_pred.predictions, eval_pred.label_ids, names))
            metrics.pop("per_type")
            return metrics

        return {**super().trainer_kwargs(job, model, processing), "compute_metrics": compute,
                "preprocess_logits_for_metrics": argmax}

    def report(self, job: Job, evaluator: Any, features: Splits) -> dict[str, Any]:
        from ..metrics import entity_metrics, strip_metrics

        pred = evaluator.predict(features.validation, metric_key_prefix="eval")
        per_type = entity_metrics(*first_subword_tags(pred.predictions, pred.label_ids, list(job.labels)))["per_type"]
        return {"metrics": rounded(strip_metrics(pred.metrics, "eval")), "labels": list(job.labels), "per_class": per_type}

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], batch_size: int = 32, **_: Any) -> list[dict[str, Any]]:
        """The entities of each text: words grouped by their first sub-word's tag, with type, mean
        score and character offsets."""
        id2label = {int(k): v for k, v in loaded.model.config.id2label.items()}
        offsets_of: dict[int, Any] = {}

        def encode(batch: list[str]) -> dict[str, Any]:
            enc = job.data.encode_inputs(job, loaded, batch)
            offsets_of["batch"] = (enc, enc.pop("offset_mapping"))
            return enc

        results = []
        for batch, logits in score(loaded.model, inputs, encode, batch_size):
            enc, offsets = offsets_of["batch"]
            probs = logits.softmax(-1)
            for row, text in enumerate(batch):
                words: dict[int, tuple[str, float, int, int]] = {}
                for position, word in enumerate(enc.word_ids(row)):
                    if word is None:
                        continue
                    start, end = (int(x) for x in offsets[row][position])
                    if word not in words:
                        value, index = probs[row, position].max(-1)
                        words[word] = (id2label[int(index)], float(value), start, end)
                    else:
                        tag, value, first, _ = words[word]
                        words[word] = (tag, value, first, end)
                results.append({"input": text, "entities": group_entities(text, [words[w] for w in sorted(words)])})
        return results

    def format_result(self, result: dict[str, Any]) -> str:
        found = "; ".join(f"{e['type']} '{e['text']}' {e['score']:.3f} [{e['start']}:{e['end']}]" for e in result["entities"])
        return f"{result['input']}\t{found or '(no entity)'}"


def group_entities(text: str, words: list[tuple[str, float, int, int]]) -> list[dict[str, Any]]:
    """Consecutive words of one type (B-X then I-X, or I-X runs) as entities: text, type, mean
    score, character span."""
    entities: list[dict[str, Any]] = []
    current: Optional[dict[str, Any]] = None
    for tag, value, start, end in words:
        kind = tag[2:] if tag.startswith(("B-", "I-")) else (None if tag == "O" else tag)
        continues = current is not None and kind == current["type"] and not tag.startswith("B-")
        if continues:
            current["end"], current["scores"] = end, current["scores"] + [value]
            continue
        if current is not None:
            entities.append(current)
        current = {"type": kind, "start": start, "end": end, "scores": [value]} if kind else None
    if current is not None:
        entities.append(current)
    return [{"text": text[e["start"]:e["end"]], "type": e["type"], "score": round(sum(e["scores"]) / len(e["scores"]), 4),
             "start": e["start"], "end": e["end"]} for e in entities]


TASK = Task(
    name="token-classification",
    family=TextHeadFamily(auto_model="AutoModelForTokenClassification", peft_task_type="TOKEN_CLS"),
    data=TaggedWords(),
    objective=EntityTagging(),
    card=CardInfo("token-classification", "Token Classification"),
    starts_from=("token-classification", "text-classification", "masked-lm"),
)
