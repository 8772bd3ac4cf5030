"""Task `question-answering`: extractive QA, SQuAD style (v1.1, and v2.0's questions without an
answer), with a BERT-family encoder and a start/end head, as `run_qa.py` + `utils_qa.py` do it.

Rows hold a question, a context and the answers (`{text: [...], answer_start: [...]}`); flat JSON /
JSONL / Parquet rows, Hub data sets, and the official nested SQuAD JSON (detected by its shape) load
alike. A long context becomes several windows (`data.max_length` tokens, `data.doc_stride` overlap);
an answer outside a window, or no answer, points at the CLS token. Answers whose `answer_start` does
not match the context are an error that counts them. Evaluation runs every window, then per
question picks the best span of `n_best_size` start/end candidates up to `max_answer_length` tokens
(for v2 the empty answer wins when the null score beats the best span by more than
`null_score_diff_threshold`) and scores it with the official SQuAD EM / F1 (`metrics.squad_metrics`).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from ..config import DataConfig
from ..data import Lengths, Splits, tokenizer_fingerprint
from ..errors import ConfigError, DataError
from .base import CardInfo, DataPart, Job, Loaded, Objective, Task, load_checked, rounded
from .parts.families import TextHeadFamily


class QuestionAnsweringData(DataConfig):
    """`data:` of extractive QA (run_qa.py's names)."""

    question_column: str = "question"
    context_column: str = "context"
    answers_column: str = "answers"
    id_column: str = "id"
    version_2_with_negative: bool = False
    max_length: int = Field(384, ge=16)
    doc_stride: int = Field(128, ge=0)
    n_best_size: int = Field(20, ge=1)
    max_answer_length: int = Field(30, ge=1)
    null_score_diff_threshold: float = 0.0


def flatten_squad(name: str, ds: Any) -> Any:
    """The official nested SQuAD JSON ({"version", "data": [{"title", "paragraphs": [{"context", "qas"}]}]})
    -> flat rows of id, title, question, context, answers; other data as it is."""
    import datasets

    if "data" not in ds.column_names or len(ds) != 1 or not isinstance(ds[0]["data"], list):
        return ds
    articles = ds[0]["data"]
    if not articles or not isinstance(articles[0], dict) or "paragraphs" not in articles[0]:
        return ds
    rows = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = [] if qa.get("is_impossible") else qa.get("answers") or []
                rows.append({"id": str(qa["id"]), "title": article.get("title", ""), "question": qa["question"],
                             "context": paragraph["context"],
                             "answers": {"text": [a["text"] for a in answers],
                                         "answer_start": [int(a["answer_start"]) for a in answers]}})
    return datasets.Dataset.from_list(rows)


def check_answers(job: Job, name: str, ds: Any) -> None:
    """Every answer is where `answer_start` says in its context; a question without an answer needs
    `data.version_2_with_negative`."""
    d = job.cfg.data
    wrong, first = 0, None
    for i, (context, answers) in enumerate(zip(ds[d.context_column], ds[d.answers_column])):
        if not isinstance(answers, dict) or "text" not in answers or "answer_start" not in answers:
            raise DataError(f"row {i} of the {name} data: {d.answers_column} is not {{text: [...], answer_start: [...]}}")
        if not answers["text"] and not d.version_2_with_negative:
            raise DataError(f"row {i} of the {name} data has no answer, but data.version_2_with_negative is false: "
                            "set it to true (SQuAD v2 style) or drop such rows")
        for text, start in zip(answers["text"], answers["answer_start"]):
            if context[int(start):int(start) + len(text)] != text:
                wrong += 1
                first = i if first is None else first
    if wrong:
        raise DataError(f"{wrong} answer(s) in the {name} data do not match their context at answer_start (first: row "
                        f"{first}): fix answer_start, or drop those rows")


def answer_windows(tokenizer: Any, questions: list[str], contexts: list[str], max_length: int, stride: int) -> Any:
    """The question + context windows of every row (`overflow_to_sample_mapping` says whose)."""
    return tokenizer([q.lstrip() for q in questions], contexts, truncation="only_second", max_length=max_length,
                     stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)


def window_features(tokenizer: Any, batch: dict[str, list], d: QuestionAnsweringData) -> dict[str, list]:
    """Windows with start/end positions (CLS when the answer is not inside), the context offsets of
    their tokens (None elsewhere) and the index of their example."""
    enc = answer_windows(tokenizer, batch[d.question_column], batch[d.context_column], d.max_length, d.doc_stride)
    out: dict[str, list] = {k: [] for k in (*enc.keys(), "start_positions", "end_positions", "example_index")}
    out.pop("overflow_to_sample_mapping")
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        sequence = enc.sequence_ids(i)
        offsets = [o if sequence[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])]
        ids = enc["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        start = end = cls
        answers = batch[d.answers_column][sample]
        if answers["text"]:
            first_char = int(answers["answer_start"][0])
            last_char = first_char + len(answers["text"][0])
            inside = [k for k, o in enumerate(offsets) if o is not None]
            if inside and offsets[inside[0]][0] <= first_char and offsets[inside[-1]][1] >= last_char:
                start = next(k for k in inside if offsets[k][1] > first_char)
                end = next(k for k in reversed(inside) if offsets[k][0] < last_char)
        for key in enc.keys():
            if key != "overflow_to_sample_mapping":
                out[key].append(offsets if key == "offset_mapping" else enc[key][i])
        out["start_positions"].append(start)
        out["end_positions"].append(end)
        out["example_index"].append(batch["example_index"][sample])
    return out


class AnswerSpans(DataPart):
    """Questions, contexts and answer spans, windowed with stride; the examples are kept for
    post-processing."""

    schema = QuestionAnsweringData

    def load(self, job: Job) -> Splits:
        d = job.cfg.data

        def columns(splits: Splits) -> dict[str, Optional[str]]:
            return {"question_column": d.question_column, "context_column": d.context_column,
                    "answers_column": d.answers_column}

        return load_checked(job, columns, before=flatten_squad, check=lambda name, ds: check_answers(job, name, ds))

    def training_texts(self, job: Job, splits: Splits):
        d = job.cfg.data
        yield from splits.train[d.question_column]
        yield from splits.train[d.context_column]

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        if not getattr(processing, "is_fast", False):
            raise ConfigError("question answering needs a fast tokenizer (offset mappings locate the answers): use a "
                              "model with a tokenizer.json, or model.tokenizer.train=true")
        d = job.cfg.data
        if d.doc_stride >= d.max_length // 2:
            raise ConfigError(f"data.doc_stride={d.doc_stride} must be well below data.max_length={d.max_length} "
                              "(windows overlap by doc_stride tokens): lower it")
        indexed = splits.map(lambda name, ds: ds.add_column("example_index", list(range(len(ds)))))
        job.examples = {name: ds for name, ds in indexed.items()}
        key = (f"question-answering/v1|{tokenizer_fingerprint(processing)}|{d.question_column}|{d.context_column}|"
               f"{d.answers_column}|{d.max_length}|{d.doc_stride}")
        features = job.tokenise(indexed, lambda batch: window_features(processing, batch, d), key, " windows")
        for name, ds in features.items():
            if len(ds) > len(getattr(indexed, name)):
                features.notes.append(f"{name}: {len(getattr(indexed, name))} questions in {len(ds)} windows")
        return features

    def collator(self, job: Job, processing: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(processing)

    def defaults(self, job: Job) -> dict[str, Any]:
        return {"train_sampling_strategy": "group_by_length"}

    def token_lengths(self, job: Job, rows: Any, processing: Any) -> list[Lengths]:
        d = job.cfg.data
        whole = processing([q.lstrip() for q in rows[d.question_column]], list(rows[d.context_column]))["input_ids"]
        windows = answer_windows(processing, list(rows[d.question_column]), list(rows[d.context_column]), d.max_length,
                                 d.doc_stride)["input_ids"]
        job.rows_per_example = len(windows) / max(len(whole), 1)
        return [Lengths("question+context", [len(x) for x in whole], d.max_length, "windowed")]

    def training_rows(self, job: Job, rows: int, lengths: list[Any]) -> int:
        return max(1, round(rows * job.rows_per_example))  # each window is a training row


def best_answers(examples: Any, features: Any, start_logits: Any, end_logits: Any, d: QuestionAnsweringData,
                 context_column: str = "context") -> tuple[dict[int, dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    """utils_qa's post-processing: per example (by index), the best answer over all its windows
    ({"text", "score" (probability among the n-best), "start", "end"}; text "" for v2's null answer)
    and its n-best list."""
    import numpy as np

    by_example = defaultdict(list)
    for i, index in enumerate(features["example_index"]):
        by_example[index].append(i)
    offsets_all = features["offset_mapping"]
    best, nbest_all = {}, {}
    for index, context in zip(examples["example_index"], examples[context_column]):
        null_score, candidates = None, []
        for i in by_example[index]:
            starts, ends, offsets = np.asarray(start_logits[i]), np.asarray(end_logits[i]), offsets_all[i]
            null = float(starts[0] + ends[0])
            null_score = null if null_score is None or null < null_score else null_score
            for a in np.argsort(starts)[-1:-d.n_best_size - 1:-1]:
                for b in np.argsort(ends)[-1:-d.n_best_size - 1:-1]:
                    if a >= len(offsets) or b >= len(offsets) or offsets[a] is None or offsets[b] is None:
                        continue
                    if b < a or b - a + 1 > d.max_answer_length:
                        continue
                    candidates.append({"start": int(offsets[a][0]), "end": int(offsets[b][1]),
                                       "score": float(starts[a] + ends[b])})
        candidates = sorted(candidates, key=lambda c: c["score"], reverse=True)[:d.n_best_size]
        if d.version_2_with_negative and null_score is not None:
            candidates.append({"start": 0, "end": 0, "score": null_score, "null": True})
            candidates.sort(key=lambda c: c["score"], reverse=True)
        for c in candidates:
            c["text"] = "" if c.get("null") else context[c["start"]:c["end"]]
        if not candidates:
            candidates = [{"start": 0, "end": 0, "score": 0.0, "text": ""}]
        scores = np.array([c["score"] for c in candidates])
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        for c, p in zip(candidates, probs):
            c["probability"] = round(float(p), 6)
        answer = candidates[0]
        if d.version_2_with_negative:
            spans = [c for c in candidates if not c.get("null") and c["text"]]
            if not spans or null_score - spans[0]["score"] > d.null_score_diff_threshold:
                answer = next(c for c in candidates if c.get("null"))
            else:
                answer = spans[0]
        best[index] = {"text": answer["text"], "score": answer["probability"], "start": answer["start"], "end": answer["end"]}
        nbest_all[index] = [{k: v for k, v in c.items() if k != "null"} for c in candidates]
    return best, nbest_all


class SpanExtraction(Objective):
    """Cross-entropy of the start and end positions; SQuAD EM / F1 after post-processing."""

    loss_is_a_mean = True
    primary_metric = "f1"
    greater_is_better = True

    def evaluate(self, job: Job, runner: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        from ..metrics import squad_metrics, strip_metrics

        d = job.cfg.data
        windows = getattr(features, split)
        examples = job.examples[split]
        # transformers 5 also groups EVALUATION batches by length when training does
        # (train_sampling_strategy=group_by_length): the logits would come back in another order than
        # the windows they belong to, so evaluate in the windows' own order
        args, grouped = runner.args, runner.args.train_sampling_strategy
        args.train_sampling_strategy = "random"
        try:
            out = runner.predict(windows, metric_key_prefix=split)
        finally:
            args.train_sampling_strategy = grouped
        start_logits, end_logits = out.predictions[:2] if isinstance(out.predictions, tuple) else out.predictions
        best, nbest = best_answers(examples, windows, start_logits, end_logits, d, d.context_column)
        ids = [str(i) for i in (examples[d.id_column] if d.id_column in examples.column_names else examples["example_index"])]
        predictions = {qid: best[index]["text"] for qid, index in zip(ids, examples["example_index"])}
        golds = {qid: list(a["text"]) for qid, a in zip(ids, examples[d.answers_column])}
        job.predictions[split] = (predictions, {qid: nbest[i] for qid, i in zip(ids, examples["example_index"])})
        metrics = {"loss": strip_metrics(out.metrics, split).get("loss"),
                   **squad_metrics(predictions, golds, d.version_2_with_negative)}
        return rounded(metrics)

    def report(self, job: Job, evaluator: Any, features: Splits) -> dict[str, Any]:
        from .. import rundir

        metrics = self.evaluate(job, evaluator, features, "validation", phase="eval")
        predictions, nbest = job.predictions["validation"]
        return {"metrics": metrics, "attachments": {rundir.PREDICTIONS_SUFFIX: predictions, rundir.NBEST_SUFFIX: nbest}}

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], context: Optional[str] = None, batch_size: int = 32,
                **_: Any) -> list[dict[str, Any]]:
        """The answer to each question in `context` (a text, or a file holding it): its text, score
        and character span; no answer (v2 models) as None."""
        import datasets

        from .parts.loops import score

        if not context:
            raise ConfigError("question answering needs the text to answer from: --context FILE_OR_TEXT")
        path = Path(context).expanduser()
        text = path.read_text(encoding="utf-8") if len(context) < 4096 and path.is_file() else context
        d = job.cfg.data
        examples = datasets.Dataset.from_dict({"question": list(inputs), "context": [text] * len(inputs),
                                               "example_index": list(range(len(inputs))),
                                               "answers": [{"text": [], "answer_start": []}] * len(inputs)})
        cols = d.model_copy(update={"question_column": "question", "context_column": "context", "answers_column": "answers"})
        windows = window_features(loaded.processing, examples[:], cols)
        rows = [{"input_ids": ids, "attention_mask": m, **({"token_type_ids": t} if t is not None else {})}
                for ids, m, t in zip(windows["input_ids"], windows["attention_mask"],
                                     windows.get("token_type_ids") or [None] * len(windows["input_ids"]))]

        def encode(batch: list[dict[str, Any]]) -> dict[str, Any]:
            return loaded.processing.pad(batch, return_tensors="pt")

        starts, ends = [], []
        for _, logits in score(loaded.model, rows, encode, batch_size, output=("start_logits", "end_logits")):
            starts += [row.tolist() for row in logits[0]]
            ends += [row.tolist() for row in logits[1]]
        best, _ = best_answers(examples, windows, starts, ends, cols)
        out = []
        for i, question in enumerate(inputs):
            answer = best[i]
            found = answer["text"] != ""
            out.append({"input": question, "answer": answer["text"] if found else None, "score": answer["score"],
                        "start": answer["start"] if found else None, "end": answer["end"] if found else None})
        return out

    def format_result(self, result: dict[str, Any]) -> str:
        if result["answer"] is None:
            return f"{result['input']}\tno answer ({result['score']:.3f})"
        return f"{result['input']}\t{result['answer']!r} {result['score']:.3f} [{result['start']}:{result['end']}]"


TASK = Task(
    name="question-answering",
    family=TextHeadFamily(auto_model="AutoModelForQuestionAnswering", peft_task_type="QUESTION_ANS"),
    data=AnswerSpans(),
    objective=SpanExtraction(),
    card=CardInfo("question-answering", "Question Answering"),
    starts_from=("question-answering", "text-classification", "token-classification", "masked-lm"),
)
