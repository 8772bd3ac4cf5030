"""Named benchmarks for `hf-tuner eval --benchmark NAME`: a Hub data set, its config and split, which
columns mean what (recipe `data.*_column` keys), the task it fits and the metrics it reports.

`--data PATH` swaps the Hub source for a local copy of the same data (same columns), so a benchmark
also runs offline. Nothing here imports torch or datasets at import time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import ConfigError, DataError, did_you_mean


@dataclass(frozen=True)
class Benchmark:
    """One named evaluation set."""

    name: str
    task: str
    dataset: str  # Hub data set id
    split: str
    columns: dict[str, str]  # recipe data keys: {"text_column": "sentence", "label_column": "label"}
    metrics: tuple[str, ...]
    description: str
    config: Optional[str] = None
    label_names: Optional[tuple[str, ...]] = None  # names of integer labels (a local copy may lack them)
    flatten: dict[str, str] = field(default_factory=dict)  # nested field -> column, e.g. translation.ro -> source
    eval_metrics: tuple[str, ...] = ()  # the recipe's `eval.metrics` for this benchmark (seq2seq: rouge / bleu, chrf)


BENCHMARKS: list[Benchmark] = [
    Benchmark("glue-sst2", "text-classification", "nyu-mll/glue", "validation",
              {"text_column": "sentence", "label_column": "label"}, ("accuracy", "f1"),
              "GLUE SST-2 movie-review sentiment, 872 validation sentences", config="sst2",
              label_names=("negative", "positive")),
    Benchmark("imdb", "text-classification", "stanfordnlp/imdb", "test",
              {"text_column": "text", "label_column": "label"}, ("accuracy", "f1"),
              "IMDB movie reviews, 25,000 test reviews", label_names=("neg", "pos")),
    Benchmark("ag_news", "text-classification", "fancyzhx/ag_news", "test",
              {"text_column": "text", "label_column": "label"}, ("accuracy", "f1"),
              "AG News topic classification, 7,600 test headlines",
              label_names=("World", "Sports", "Business", "Sci/Tech")),
    Benchmark("wikitext-2", "causal-lm", "Salesforce/wikitext", "test",
              {"text_column": "text"}, ("perplexity",),
              "WikiText-2 (raw) test set, language-model perplexity", config="wikitext-2-raw-v1"),
    Benchmark("xsum", "seq2seq", "EdinburghNLP/xsum", "test",
              {"source_column": "document", "target_column": "summary"}, ("rouge1", "rouge2", "rougeL"),
              "XSum one-sentence news summaries, 11,334 test articles", eval_metrics=("rouge",)),
    Benchmark("cnn_dailymail", "seq2seq", "abisee/cnn_dailymail", "test",
              {"source_column": "article", "target_column": "highlights"}, ("rouge1", "rouge2", "rougeL"),
              "CNN/DailyMail news summaries, 11,490 test articles", config="3.0.0", eval_metrics=("rouge",)),
    Benchmark("wmt16-ro-en", "seq2seq", "wmt/wmt16", "test",
              {"source_column": "source", "target_column": "target"}, ("bleu", "chrf"),
              "WMT16 Romanian -> English translation, 1,999 test sentences", config="ro-en",
              flatten={"translation.ro": "source", "translation.en": "target"}, eval_metrics=("bleu", "chrf")),
    Benchmark("cifar10", "image-classification", "uoft-cs/cifar10", "test",
              {"image_column": "img", "label_column": "label"}, ("accuracy", "f1"),
              "CIFAR-10 32x32 images, 10,000 test images",
              label_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
    Benchmark("beans", "image-classification", "AI-Lab-Makerere/beans", "test",
              {"image_column": "image", "label_column": "labels"}, ("accuracy", "f1"),
              "Bean leaf diseases, 128 test photos",
              label_names=("angular_leaf_spot", "bean_rust", "healthy")),
    Benchmark("mnist", "image-classification", "ylecun/mnist", "test",
              {"image_column": "image", "label_column": "label"}, ("accuracy", "f1"),
              "MNIST handwritten digits, 10,000 test images",
              label_names=tuple(str(i) for i in range(10))),
]


def benchmark_names() -> list[str]:
    return [b.name for b in BENCHMARKS]


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called `name`; a one-line error with a did-you-mean otherwise."""
    for bench in BENCHMARKS:
        if bench.name == name:
            return bench
    raise ConfigError(
        f"unknown benchmark '{name}'{did_you_mean(name, benchmark_names())}; "
        f"benchmarks: {', '.join(benchmark_names())} (see hf-tuner eval --list-benchmarks)"
    )


def prepare_benchmark_data(bench: Any, override: Optional[str], split: Optional[str], max_samples: Optional[int], seed: int) -> str:
    """Load a benchmark's data (its Hub data set, or the local copy in `override`), give integer
    labels their names, flatten nested fields, keep `max_samples` rows (seeded) and write the result
    to the hf-tuner cache as Parquet. Returns that file: from then on it is an ordinary local source."""
    from .config import DataConfig
    from .data import digest, limit_rows, load_source
    from .packaged import cache_root

    source = override or bench.dataset
    split = split or bench.split
    cfg = DataConfig(train=source, config_name=None if override else bench.config)
    try:
        ds = load_source(source, cfg, split)
    except DataError as exc:
        if override:
            raise
        raise DataError(f"{exc} (benchmark {bench.name}: point --data at a local copy of {bench.dataset} to run offline)") from None
    if bench.flatten:
        ds = ds.flatten()
        mapping = {k: v for k, v in bench.flatten.items() if k in ds.column_names}
        if mapping:
            ds = ds.rename_columns(mapping)
    ds = limit_rows(ds, max_samples, seed)
    label_col = bench.columns.get("label_column")
    if bench.label_names and label_col and label_col in ds.column_names:
        from datasets import ClassLabel, Value

        feature = ds.features[label_col]
        if isinstance(feature, Value) and feature.dtype.startswith("int"):
            ds = ds.cast_column(label_col, ClassLabel(names=list(bench.label_names)))
    folder = cache_root() / "eval-data"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{bench.name}-{digest(ds._fingerprint, source, split, max_samples, seed)}.parquet"
    if not out.is_file():
        tmp = out.with_suffix(".tmp.parquet")
        ds.to_parquet(str(tmp))
        tmp.replace(out)
    return str(out)
