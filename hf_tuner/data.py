"""Data: load local files, image folders, `packaged:` sets or Hub data sets; check columns; encode
labels; make the validation split; limit rows; tokenise once and cache the result."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .config import DataConfig
from .errors import DataError, listing
from .packaged import cache_root, is_packaged, resolve_dataset

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
                 ".txt": "text"}  # text: one row per line, in a `text` column
CONLL_SUFFIXES = (".conll", ".iob", ".bio")  # CoNLL text: a token and its tag per line (`data.format: conll` for .txt)


@dataclass
class Lengths:
    """Token lengths of one field of sample rows (`hf-tuner plan`), and what a task does to rows
    over `limit`."""

    name: str
    values: list[int]
    limit: Optional[int]
    beyond: str = "cut"  # "cut" (truncated to the limit) or "dropped"

    def over(self) -> float:
        """Share of rows longer than the limit."""
        if not self.values or self.limit is None:
            return 0.0
        return sum(v > self.limit for v in self.values) / len(self.values)

    def percentiles(self) -> dict[str, int]:
        import numpy as np

        arr = np.asarray(self.values)
        return {f"p{q}": int(np.percentile(arr, q, method="higher")) for q in (50, 90, 95, 99)} | {"max": int(arr.max())}

    def longest_kept(self) -> int:
        longest = max(self.values) if self.values else 0
        return min(longest, self.limit) if self.limit else longest


@dataclass
class Splits:
    """The splits a run uses (train, validation, optional test) and where each came from."""

    train: Any
    validation: Any
    test: Any = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def items(self):
        return [(n, d) for n, d in (("train", self.train), ("validation", self.validation), ("test", self.test)) if d is not None]

    def map(self, fn: Callable[[str, Any], Any]) -> "Splits":
        """Apply fn(split_name, dataset) to every split."""
        out = Splits(None, None, None, dict(self.sources), list(self.notes))
        for name, ds in self.items():
            setattr(out, name, fn(name, ds))
        return out

    def rows(self) -> dict[str, int]:
        return {name: len(ds) for name, ds in self.items()}


def _looks_like_path(spec: str) -> bool:
    suffix = Path(spec).suffix.lower()
    return spec.startswith((".", "/", "~")) or suffix in FILE_BUILDERS or suffix in CONLL_SUFFIXES or Path(spec).expanduser().exists()


def read_conll(path: Path, label: str) -> Any:
    """A CoNLL file -> a Dataset of `tokens` and `ner_tags` (lists of strings): whitespace-separated
    columns with the token first and the tag last (CoNLL-2003's four columns or plain two), a blank
    line between sentences, `-DOCSTART-` lines skipped."""
    import datasets

    rows: list[dict[str, list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            rows.append({"tokens": list(tokens), "ner_tags": list(tags)})
            tokens.clear()
            tags.clear()

    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                flush()
                continue
            if fields[0] == "-DOCSTART-":
                flush()
                continue
            if len(fields) < 2:
                raise DataError(f"{label} line {number} has one column ({line.strip()!r}): a CoNLL line holds a token "
                                "and its tag separated by whitespace, and a blank line ends a sentence")
            tokens.append(fields[0])
            tags.append(fields[-1])
    flush()
    if not rows:
        raise DataError(f"the data file {label} is empty (no sentences)")
    return datasets.Dataset.from_list(rows)


def check_paths(cfg: DataConfig) -> None:
    """A data file or folder the recipe names that does not exist: the error `load_source` would give,
    before torch, transformers or datasets are imported (seconds sooner)."""
    for spec in (cfg.train, cfg.validation, cfg.test):
        if spec and not is_packaged(spec) and _looks_like_path(spec) and not Path(spec).expanduser().exists():
            raise DataError(f"data file not found: {spec}")


def load_source(spec: str, cfg: DataConfig, split: Optional[str]):
    """One data source -> a `datasets.Dataset` (split given) or `DatasetDict` (split None, Hub only)."""
    import datasets

    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    label = spec
    if is_packaged(spec):
        spec = resolve_dataset(spec)
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise DataError(f"data file not found: {label}")
        if path.is_dir():
            return _load_folder(path, label)
        if path.suffix.lower() in CONLL_SUFFIXES or (getattr(cfg, "format", None) == "conll" and path.suffix.lower() == ".txt"):
            return read_conll(path, label)
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DataError(f"cannot read {label}: use .csv, .tsv, .json, .jsonl, .parquet, .txt (one row per line; data.format=conll for CoNLL), CoNLL .conll/.iob/.bio or a folder of images")
        kwargs: dict[str, Any] = {}
        if path.suffix.lower() == ".tsv":
            kwargs["delimiter"] = "\t"
        if builder in ("csv", "text") and cfg.encoding:
            kwargs["encoding"] = cfg.encoding
        if path.stat().st_size == 0:
            raise DataError(f"the data file {label} is empty")
        verbosity = datasets.logging.get_verbosity()
        datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its "Failed to read file" line: ours says more
        try:
            return datasets.load_dataset(builder, data_files=str(path.resolve()), split="train", **kwargs)
        except Exception as exc:  # pyarrow/pandas parse errors come in many types
            if "corresponds to no data" in str(exc):  # a header and no rows
                raise DataError(f"the data file {label} is empty (no rows)") from None
            found = parse_problem(path, label, builder, cfg.encoding or "utf-8", kwargs.get("delimiter", ","))
            raise DataError(found or f"cannot read {label}: {_first_line(exc)}") from None
        finally:
            datasets.logging.set_verbosity(verbosity)
    return _load_hub(spec, cfg, split)


def parse_problem(path: Path, label: str, builder: str, encoding: str, delimiter: str = ",") -> Optional[str]:
    """Why a text data file failed to load, naming the line: bytes that are not `encoding`, a CSV row
    with another number of fields than the header, a JSON Lines line that is not JSON. None when the
    file shows none of these (the library's own message is all there is)."""
    import csv
    import io
    import json

    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return (f"{label} line {line} is not {encoding} text (byte 0x{raw[exc.start]:02x}): set data.encoding "
                "(e.g. latin-1 or cp1252) to the file's encoding, or save it as UTF-8")
    except LookupError:
        return f"data.encoding={encoding} is not an encoding Python knows (e.g. utf-8, latin-1, cp1252)"
    if builder == "csv":
        rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(rows, [])
        for row in rows:
            if row and len(row) != len(header):
                return (f"{label} line {rows.line_num} has {len(row)} fields, the header has {len(header)}: "
                        "quote fields that hold the delimiter, or fix the row")
    if builder == "json" and path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as exc:
                    return f"{label} line {number} is not valid JSON ({exc.msg}): JSON Lines hold one JSON object per line"
    return None


def _load_folder(path: Path, label: str):
    import datasets

    images = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")]
    if not images:
        raise DataError(f"folder {label} holds no images: an image folder has one sub-folder of images per class")
    try:
        return datasets.load_dataset("imagefolder", data_dir=str(path.resolve()), split="train")
    except Exception as exc:
        raise DataError(f"cannot read image folder {label}: {_first_line(exc)}") from None


def _load_hub(name: str, cfg: DataConfig, split: Optional[str]):
    import datasets

    try:
        return datasets.load_dataset(name, cfg.config_name, split=split, revision=cfg.revision)
    except ValueError as exc:
        text = _first_line(exc)
        if "split" in text.lower() or "Unknown split" in text:
            raise DataError(f"data set '{name}' has no split '{split}': {text}") from None
        raise DataError(f"cannot load data set '{name}': {text}") from None
    except Exception as exc:
        import os

        if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise DataError(
                f"cannot load data set '{name}' from the Hub: offline mode is on and it is not cached "
                "(use a local file, or packaged:NAME)"
            ) from None
        raise DataError(f"cannot load data set '{name}': {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_splits(cfg: DataConfig) -> Splits:
    """The train split and any validation/test split the recipe names (see `finish_splits`)."""
    splits = Splits(load_source(cfg.train, cfg, cfg.train_split), None, None, {"train": cfg.train})
    for name in ("validation", "test"):
        source, split = getattr(cfg, name), getattr(cfg, f"{name}_split")
        if source:  # its own file or data set
            setattr(splits, name, load_source(source, cfg, split or name))
            splits.sources[name] = source
        elif split:  # another split of the train data set
            setattr(splits, name, load_source(cfg.train, cfg, split))
            splits.sources[name] = f"{cfg.train} [{split}]"
    check_not_empty(splits.train, "train", cfg.train)
    return splits


def finish_splits(splits: Splits, cfg: DataConfig, seed: int, stratify: Optional[str] = None) -> Splits:
    """Cut validation (and test, with `data.test_size`) from train where missing; apply row limits."""
    if splits.test is None and cfg.test_size:
        splits.train, splits.test = split_off(splits.train, cfg.test_size, seed, stratify)
        splits.sources["test"] = f"{int(cfg.test_size * 100)}% of train (seed {seed})"
    if splits.validation is None:
        splits.train, splits.validation = split_off(splits.train, cfg.validation_size, seed, stratify)
        splits.sources["validation"] = f"{int(cfg.validation_size * 100)}% of train (seed {seed})"
    splits.train = limit_rows(splits.train, cfg.max_train_samples, seed)
    splits.validation = limit_rows(splits.validation, cfg.max_eval_samples, seed)
    if splits.test is not None:
        splits.test = limit_rows(splits.test, cfg.max_eval_samples, seed)
    for name, ds in splits.items():
        check_not_empty(ds, name, splits.sources.get(name, name))
    return splits


def split_off(ds, fraction: float, seed: int, stratify: Optional[str] = None):
    """(rest, held_out) with `fraction` of the rows held out, seeded and optionally stratified."""
    if len(ds) < 2:
        raise DataError(f"the training data has {len(ds)} row(s): too few to split off a validation set")
    try:
        parts = ds.train_test_split(test_size=fraction, seed=seed, stratify_by_column=stratify)
    except ValueError:  # a class too small to stratify: fall back to a plain seeded split
        parts = ds.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def limit_rows(ds, n: Optional[int], seed: int):
    """A seeded random subset of `n` rows (all rows when n is None or larger)."""
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n)).flatten_indices()


def check_not_empty(ds, split: str, source: str) -> None:
    if len(ds) == 0:
        raise DataError(f"the {split} data ({source}) is empty")


def require_columns(ds, columns: list[Optional[str]], split: str, source: str, keys: Optional[list[str]] = None) -> None:
    """Fail with the list of existing columns when a needed column is missing."""
    for i, col in enumerate(columns):
        if col is None:
            continue
        if col not in ds.column_names:
            key = f" (set data.{keys[i]})" if keys else ""
            raise DataError(f"column '{col}' not found in the {split} data ({source}); columns are: {listing(ds.column_names)}{key}")


def require_text(ds, column: str, split: str) -> None:
    """Every row of a text column must be a non-empty string."""
    values = ds[column]
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):
            raise DataError(f"text column '{column}' has a missing value in the {split} data (row {i}): drop or fill such rows")


# ------------------------------------------------------------------------- labels


def encode_labels(splits: Splits, column: str, wanted: Optional[list[str]]) -> tuple[Splits, list[str]]:
    """Map the label column of every split to integer ids in a `labels` ClassLabel column.

    The label set is `wanted` (rows with other labels are dropped, in that order) or else every label
    seen in train, sorted (numerically when they are numbers). Missing values, a single class, and
    evaluation labels unseen in training are errors.
    """
    from datasets import ClassLabel

    for name, ds in splits.items():
        require_columns(ds, [column], name, splits.sources.get(name, name), ["label_column"])
    train_feature = splits.train.features[column]
    names_of = train_feature.names if isinstance(train_feature, ClassLabel) else None

    def as_text(values: list) -> list[Optional[str]]:
        out = []
        for v in values:
            if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip()):
                out.append(None)
            elif names_of is not None and isinstance(v, int):
                out.append(names_of[v] if 0 <= v < len(names_of) else None)
            elif isinstance(v, float) and v.is_integer():
                out.append(str(int(v)))
            else:
                out.append(str(v).strip())
        return out

    texts = {name: as_text(ds[column]) for name, ds in splits.items()}
    for name, values in texts.items():
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            raise DataError(
                f"label column '{column}' has {len(missing)} missing value(s) in the {name} data "
                f"(first at row {missing[0]}): drop or fill those rows"
            )
    if wanted:
        labels = list(wanted)
        present = set(texts["train"])
        absent = [l for l in labels if l not in present]
        if absent:
            seen = sorted(present, key=_label_sort_key)
            raise DataError(f"data.labels names {absent} but the train labels are: {listing(seen)}: set data.labels=null "
                            f"to use every label, or list the ones to keep (e.g. data.labels=[{', '.join(seen[:2])}])")
    else:
        seen = set(texts["train"])
        labels = names_of if names_of and seen <= set(names_of) else sorted(seen, key=_label_sort_key)
    keep = set(labels)
    if len(set(texts["train"]) & keep) < 2:
        only = sorted(set(texts["train"]) & keep)
        raise DataError(f"only one class ({listing(only)}) in label column '{column}' of the train data: a classifier needs at least two")
    index = {l: i for i, l in enumerate(labels)}
    out = Splits(None, None, None, dict(splits.sources), list(splits.notes))
    feature = ClassLabel(names=labels)
    for name, ds in splits.items():
        values = texts[name]
        if not wanted:
            unseen = sorted({v for v in values if v not in keep})
            if unseen:
                raise DataError(f"the {name} data has label(s) {listing(unseen)} never seen in train (train labels: {listing(labels)})")
        rows = [i for i, v in enumerate(values) if v in keep]
        if len(rows) < len(values):
            out.notes.append(f"{name}: dropped {len(values) - len(rows)} rows whose label is not in data.labels")
            ds = ds.select(rows)
            values = [values[i] for i in rows]
        check_not_empty(ds, name, splits.sources.get(name, name))
        ids = [index[v] for v in values]
        if "labels" in ds.column_names and column != "labels":
            ds = ds.remove_columns("labels")
        ds = ds.remove_columns(column).add_column("labels", ids).cast_column("labels", feature)
        setattr(out, name, ds)
    return out, labels


def align_labels(ds: Any, data_labels: list[str], model_labels: list[str]) -> Any:
    """Re-number a split's `labels` column from the data's label order to the model's, by name."""
    unknown = [l for l in data_labels if l not in model_labels]
    if unknown:
        raise DataError(f"the data has label(s) {listing(unknown)} that the model does not know (its labels: "
                        f"{listing(model_labels)}): keep only known ones with --column 'labels=[...]'")
    if list(data_labels) == list(model_labels):
        return ds
    from datasets import ClassLabel, Value

    mapping = [model_labels.index(l) for l in data_labels]
    ds = ds.cast_column("labels", Value("int64"))
    ds = ds.map(lambda batch: {"labels": [mapping[i] for i in batch["labels"]]}, batched=True, desc="Matching labels")
    return ds.cast_column("labels", ClassLabel(names=list(model_labels)))


def _label_sort_key(label: str):
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


# ------------------------------------------------------------------------- cached preprocessing


def digest(*parts: Any) -> str:
    """A short stable hash of values (by their repr)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A stable hash of a tokenizer's full definition (vocab, merges, special tokens, settings)."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = json.loads(backend.to_str())
        # truncation/padding are call-time state the tokenizer keeps from its last call: not part of it
        definition.pop("truncation", None)
        definition.pop("padding", None)
        text = json.dumps(definition, sort_keys=True)
    else:
        text = repr(sorted(tokenizer.get_vocab().items()))
    return digest(text, tokenizer.padding_side, getattr(tokenizer, "truncation_side", None), str(tokenizer.special_tokens_map))


def cached_map(ds, fn: Callable, key: str, desc: str, remove_columns: Optional[list[str]] = None, batched: bool = True):
    """`ds.map(fn)` whose result is kept in the hf-tuner cache under a hash of the input data's
    fingerprint and `key` (which must describe everything fn depends on): a second run with the
    same data and settings reads the result instead of recomputing it. Returns (dataset, was_cached)."""
    folder = cache_root() / "preprocessed"
    folder.mkdir(parents=True, exist_ok=True)
    fp = digest(ds._fingerprint, key, len(ds))
    path = folder / f"{fp}.arrow"
    hit = path.is_file()
    out = ds.map(
        fn, batched=batched, remove_columns=remove_columns, cache_file_name=str(path),
        load_from_cache_file=True, new_fingerprint=fp, desc=desc,
    )
    return out, hit
