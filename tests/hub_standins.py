"""Stand-ins for every Hub model and data set a bundled recipe names, built from code for the fake Hub.

`STANDINS` is the one table: Hub id -> what is served in its place and the source each detail follows
(the model's config.json / tokenizer files, the data set's card and file layout), so a reviewer can
check it against the Hub. A detail marked UNVERIFIED comes from memory, not from a page read while
writing this (the Hub cannot be reached from here).

Models are tiny random models of the real architecture class and model type (so module names, e.g.
`query`/`value`, `c_attn`, `q_proj`/`v_proj`, are the real ones), with a tokenizer of the real class and
the real special tokens (and their ids where they are small numbers), and the real label names.
Data sets hold a few dozen rows with the real schema: column names and types, nested fields,
ClassLabel names, config names, split names and the file layout datasets reads them from.

    files = build("google-bert/bert-base-uncased", workdir)   # {path in repo: bytes}
"""
from __future__ import annotations

import gzip
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

WORDS = ("the a movie film story actor plot scene music was is were very quite not really good great bad "
         "awful fine boring funny sad happy long short new old man woman city river house night day year "
         "people time world team game police report said says told after before with without and but or "
         "of in on at to from by for about over under london paris france president minister company").split()
NAMES = ["John", "Mary", "Paris", "London", "Reuters", "EU", "Germany", "Smith", "Obama", "Google"]


def sentences(n: int, seed: int, lo: int = 4, hi: int = 14) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
        out.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", "."]))
    return out


def corpus() -> list[str]:
    """Text the stand-in tokenizers are trained on (the data stand-ins draw from the same words)."""
    return sentences(400, 0) + [" ".join(NAMES)] * 5 + ["Human: Assistant: TL;DR: = Heading = @-@ , . ! ? ( ) ' \" : ;"] * 5


# ---------------------------------------------------------------------------------------------------
# tokenizers
def wordpiece_vocab(lowercase: bool) -> list[str]:
    """A BERT vocab laid out like the real one: [PAD]=0, [unused0..98], [UNK]=100, [CLS]=101,
    [SEP]=102, [MASK]=103, then characters, ##characters and whole words."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted(set("".join(corpus())) - {" "})
    if lowercase:
        chars = sorted({c.lower() for c in chars})
    words = sorted({w.lower() if lowercase else w for w in " ".join(corpus()).replace(".", " ").split()})
    for token in chars + [f"##{c}" for c in chars] + words:
        if token not in vocab:
            vocab.append(token)
    return vocab


def bert_tokenizer(lowercase: bool, cls_name: str = "BertTokenizerFast"):
    import transformers

    vocab = {token: i for i, token in enumerate(wordpiece_vocab(lowercase))}
    return checked(getattr(transformers, cls_name)(vocab=vocab, do_lower_case=lowercase, model_max_length=512))


def checked(tok):
    """A stand-in tokenizer must really tokenize (transformers 5 ignores unknown keyword arguments such as
    vocab_file=, which leaves an empty vocabulary): a corpus sentence -> several known ids."""
    ids = tok("The movie was very good.", add_special_tokens=False)["input_ids"]
    assert len(ids) >= 4 and tok.unk_token_id not in ids[:-1], (type(tok).__name__, ids)
    return tok


def byte_bpe_files(specials: list[str], vocab_size: int = 600) -> tuple[dict, list[str]]:
    """A byte-level BPE (GPT-2 / BART kind) trained on the corpus: (vocab, merges)."""
    import tempfile

    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus(), vocab_size=vocab_size, min_frequency=2, special_tokens=specials, show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        vocab = json.loads((Path(tmp) / "vocab.json").read_text())
        merges = [tuple(m.split(" ")) for m in (Path(tmp) / "merges.txt").read_text().splitlines() if m and not m.startswith("#version")]
    return vocab, merges


def gpt2_tokenizer():
    """GPT2TokenizerFast with <|endoftext|> as bos/eos/unk (the last id, as 50256 is) and no pad token."""
    import transformers

    vocab, merges = byte_bpe_files([])
    vocab["<|endoftext|>"] = len(vocab)
    tok = transformers.GPT2TokenizerFast(vocab=vocab, merges=merges, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                         unk_token="<|endoftext|>", model_max_length=1024)
    assert tok.pad_token is None and tok.eos_token_id == len(vocab) - 1
    return checked(tok)


def bart_tokenizer():
    """BartTokenizerFast: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last (as in facebook/bart-base)."""
    import transformers

    vocab, merges = byte_bpe_files(["<s>", "<pad>", "</s>", "<unk>"])
    vocab["<mask>"] = len(vocab)
    tok = transformers.BartTokenizerFast(vocab=vocab, merges=merges, model_max_length=1024)
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    return checked(tok)


def marian_tokenizer(folder: Path):
    """MarianTokenizer: SentencePiece source.spm / target.spm and a shared vocab.json with
    </s>=0, <unk>=1 and <pad> the last id (as in Helsinki-NLP/opus-mt-en-fr)."""
    import sentencepiece as spm
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "spm-corpus.txt"
    text.write_text("\n".join(corpus() + [s.replace("the", "le").replace("a ", "une ") for s in corpus()]) + "\n")
    for name in ("source", "target"):
        spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / name), vocab_size=150,
                                       model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, bos_id=-1, eos_id=0, unk_id=1,
                                       pad_id=-1, minloglevel=2)
        (folder / f"{name}.model").rename(folder / f"{name}.spm")
        (folder / f"{name}.vocab").unlink()
    text.unlink()
    pieces = ["</s>", "<unk>"]
    for name in ("source", "target"):
        proc = spm.SentencePieceProcessor(model_file=str(folder / f"{name}.spm"))
        pieces += [proc.id_to_piece(i) for i in range(proc.get_piece_size()) if proc.id_to_piece(i) not in pieces]
    vocab = {p: i for i, p in enumerate(pieces)}
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tok = transformers.MarianTokenizer(source_spm=str(folder / "source.spm"), target_spm=str(folder / "target.spm"),
                                       vocab=str(folder / "vocab.json"), source_lang="en", target_lang="fr",
                                       model_max_length=512)
    for name in ("source.spm", "target.spm", "vocab.json"):
        (folder / name).unlink()
    assert tok.eos_token_id == 0 and tok.pad_token_id == len(vocab) - 1
    return checked(tok)


# ---------------------------------------------------------------------------------------------------
# models
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def bert_model(lowercase: bool) -> Callable[[Path], dict[str, bytes]]:
    def build(folder: Path) -> dict[str, bytes]:
        import transformers

        tok = bert_tokenizer(lowercase)
        cfg = transformers.BertConfig(vocab_size=len(tok), max_position_embeddings=512, type_vocab_size=2,
                                      pad_token_id=0, architectures=["BertForMaskedLM"], **TINY)
        transformers.BertForMaskedLM(cfg).save_pretrained(folder)
        tok.save_pretrained(folder)
        return folder_files(folder)
    return build


def gpt2_model(folder: Path) -> dict[str, bytes]:
    import transformers

    tok = gpt2_tokenizer()
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=32, n_layer=2, n_head=2,
                                  bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                                  architectures=["GPT2LMHeadModel"], task_specific_params={"text-generation": {"do_sample": True, "max_length": 50}})
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder_files(folder)


SMOLLM2_TEMPLATE = (  # SmolLM2-Instruct's tokenizer_config.json chat_template (a default system turn first), UNVERIFIED wording
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def smollm2_model(folder: Path) -> dict[str, bytes]:
    """A tiny LlamaForCausalLM with SmolLM2's special tokens: <|endoftext|>=0 (unk), <|im_start|>=1 (bos),
    <|im_end|>=2 (eos and pad), tied embeddings, and its ChatML chat template."""
    import transformers

    vocab, merges = byte_bpe_files(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok = transformers.GPT2TokenizerFast(vocab=vocab, merges=merges, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                         unk_token="<|endoftext|>", pad_token="<|im_end|>", model_max_length=8192)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = SMOLLM2_TEMPLATE
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 2)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=8192,
                                   bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True,
                                   rope_theta=100000, architectures=["LlamaForCausalLM"])
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    transformers.GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder_files(folder)


def bart_model(folder: Path) -> dict[str, bytes]:
    import transformers

    tok = bart_tokenizer()
    cfg = transformers.BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
                                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                  decoder_ffn_dim=64, max_position_embeddings=1024, pad_token_id=1, bos_token_id=0,
                                  eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=0,
                                  forced_eos_token_id=2, architectures=["BartModel"])
    transformers.BartModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder_files(folder)


def marian_model(folder: Path) -> dict[str, bytes]:
    import transformers

    tok = marian_tokenizer(folder / "_tok")
    pad = tok.pad_token_id
    cfg = transformers.MarianConfig(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
                                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                    decoder_ffn_dim=64, max_position_embeddings=512, pad_token_id=pad, eos_token_id=0,
                                    decoder_start_token_id=pad, bos_token_id=0, scale_embedding=True,
                                    activation_function="swish", share_encoder_decoder_embeddings=True,
                                    architectures=["MarianMTModel"])
    transformers.MarianMTModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    import shutil

    shutil.rmtree(folder / "_tok")
    return folder_files(folder)


def vit_model(folder: Path) -> dict[str, bytes]:
    import transformers

    cfg = transformers.ViTConfig(image_size=224, patch_size=16, num_channels=3, architectures=["ViTModel"], **TINY)
    transformers.ViTModel(cfg).save_pretrained(folder)
    transformers.ViTImageProcessor(do_resize=True, size={"height": 224, "width": 224}, do_normalize=True,
                                   image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(folder)
    return folder_files(folder)


def distilbert_imdb(folder: Path) -> dict[str, bytes]:
    import transformers

    tok = bert_tokenizer(True, "DistilBertTokenizerFast")
    cfg = transformers.DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                        max_position_embeddings=512, pad_token_id=0,
                                        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
                                        architectures=["DistilBertForSequenceClassification"])
    transformers.DistilBertForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder_files(folder)


# ---------------------------------------------------------------------------------------------------
# data sets
def parquet(rows: dict, features) -> bytes:
    import datasets

    buf = io.BytesIO()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(buf)
    return buf.getvalue()


def card(configs: dict[str, dict[str, str]], default: Optional[str] = None, extra: str = "") -> bytes:
    """A dataset card whose YAML `configs:` maps each config's splits to data files (push_to_hub's layout)."""
    lines = ["---", extra.rstrip()] if extra else ["---"]
    lines.append("configs:")
    for name, splits in configs.items():
        lines.append(f"- config_name: {name}")
        if name == default:
            lines.append("  default: true")
        lines.append("  data_files:")
        for split, path in splits.items():
            lines += [f"  - split: {split}", f"    path: {path}"]
    lines += ["---", "", "# stand-in built by tests/hub_standins.py", ""]
    return "\n".join(l for l in lines if l != "").encode()


def png(seed: int, size: int = 32) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


SPLIT_ROWS = {"train": 40, "validation": 12, "test": 12}


def sst2(_: Path) -> dict[str, bytes]:
    import datasets

    feats = datasets.Features({"idx": datasets.Value("int32"), "sentence": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["negative", "positive"])})
    files = {}
    for i, (split, n) in enumerate(SPLIT_ROWS.items()):
        labels = [-1] * n if split == "test" else [j % 2 for j in range(n)]  # the test split is unlabelled
        files[f"data/{split}-00000-of-00001.parquet"] = parquet(
            {"idx": list(range(n)), "sentence": sentences(n, 10 + i), "label": labels}, feats)
    files["README.md"] = card({"default": {s: f"data/{s}-*" for s in SPLIT_ROWS}})
    return files


def imdb(_: Path) -> dict[str, bytes]:
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    files = {}
    for i, split in enumerate(["train", "test", "unsupervised"]):
        n = 40 if split == "train" else 12
        labels = [-1] * n if split == "unsupervised" else [j % 2 for j in range(n)]
        text = [s + " <br /><br />" + t for s, t in zip(sentences(n, 20 + i, 20, 40), sentences(n, 30 + i))]
        files[f"plain_text/{split}-00000-of-00001.parquet"] = parquet({"text": text, "label": labels}, feats)
    files["README.md"] = card({"plain_text": {s: f"plain_text/{s}-*" for s in ["train", "test", "unsupervised"]}}, "plain_text")
    return files


def tldr(_: Path) -> dict[str, bytes]:
    import datasets

    feats = datasets.Features({"prompt": datasets.Value("string"), "completion": datasets.Value("string")})
    files = {}
    for i, (split, n) in enumerate(SPLIT_ROWS.items()):
        posts = sentences(n, 40 + i, 20, 40)
        prompts = [f"SUBREDDIT: r/movies\n\nTITLE: {t}\n\nPOST: {p}\n\nTL;DR:" for t, p in zip(sentences(n, 50 + i, 3, 6), posts)]
        files[f"data/{split}-00000-of-00001.parquet"] = parquet(
            {"prompt": prompts, "completion": [" " + s for s in sentences(n, 60 + i, 4, 10)]}, feats)
    files["README.md"] = b"---\ntags:\n- trl\n---\n\n# TL;DR Dataset (stand-in)\n"  # no configs: splits from file names
    return files


def capybara(_: Path) -> dict[str, bytes]:
    """trl-lib/Capybara: source, messages (list of {content, role}), num_turns; data/{train,test}-*.parquet."""
    import datasets

    feats = datasets.Features({"source": datasets.Value("string"),
                               "messages": [{"content": datasets.Value("string"), "role": datasets.Value("string")}],
                               "num_turns": datasets.Value("int64")})
    files = {}
    for i, (split, n) in enumerate((("train", 40), ("test", 12))):
        asks, answers = sentences(2 * n, 70 + i, 4, 10), sentences(2 * n, 80 + i, 6, 16)
        conversations = []
        for j in range(n):
            turns = 1 + j % 2  # one or two exchanges
            conversations.append([m for t in range(turns) for m in ({"content": asks[2 * j + t], "role": "user"},
                                                                    {"content": answers[2 * j + t], "role": "assistant"})])
        files[f"data/{split}-00000-of-00001.parquet"] = parquet(
            {"source": ["General-Instruct"] * n, "messages": conversations, "num_turns": [len(c) for c in conversations]}, feats)
    files["README.md"] = card({"default": {"train": "data/train-*", "test": "data/test-*"}})
    return files


def cnn_dailymail(_: Path) -> dict[str, bytes]:
    import datasets

    feats = datasets.Features({"article": datasets.Value("string"), "highlights": datasets.Value("string"),
                               "id": datasets.Value("string")})
    files, configs = {}, {}
    for version in ["1.0.0", "2.0.0", "3.0.0"]:
        configs[version] = {}
        for i, (split, n) in enumerate(SPLIT_ROWS.items()):
            name = f"{version}/{split}-00000-of-00001.parquet"
            articles = [f"(CNN) -- {a}" for a in sentences(n, 70 + i, 30, 60)]
            files[name] = parquet({"article": articles, "highlights": sentences(n, 80 + i, 5, 12),
                                   "id": [f"{j:040x}" for j in range(n)]}, feats)
            configs[version][split] = f"{version}/{split}-*"
    files["README.md"] = card(configs)
    return files


def opus_books(_: Path) -> dict[str, bytes]:
    import datasets

    files, configs = {}, {}
    for pair in ["de-en", "en-es", "en-fr", "fr-it"]:  # a few of its 16 pairs; en-fr is the one recipes use
        a, b = pair.split("-")
        feats = datasets.Features({"id": datasets.Value("string"), "translation": datasets.Translation(languages=[a, b])})
        src = sentences(48, 90)
        rows = {"id": [str(j) for j in range(48)], "translation": [{a: s, b: s.replace("the", "le")} for s in src]}
        files[f"{pair}/train-00000-of-00001.parquet"] = parquet(rows, feats)
        configs[pair] = {"train": f"{pair}/train-*"}
    files["README.md"] = card(configs)
    return files


def wikitext(_: Path) -> dict[str, bytes]:
    import datasets

    feats = datasets.Features({"text": datasets.Value("string")})
    files, configs = {}, {}
    for name in ["wikitext-103-raw-v1", "wikitext-103-v1", "wikitext-2-raw-v1", "wikitext-2-v1"]:
        configs[name] = {}
        for i, split in enumerate(["test", "train", "validation"]):
            lines = []
            for j, s in enumerate(sentences(30 if split == "train" else 12, 100 + i, 10, 30)):
                lines += ["", f" = Heading {j} = \n", ""] if j % 5 == 0 else []
                lines.append(f" {s} \n")
            files[f"{name}/{split}-00000-of-00001.parquet"] = parquet({"text": lines}, feats)
            configs[name][split] = f"{name}/{split}-*"
    files["README.md"] = card(configs)
    return files


def beans(_: Path) -> dict[str, bytes]:
    import datasets

    feats = datasets.Features({"image_file_path": datasets.Value("string"), "image": datasets.Image(),
                               "labels": datasets.ClassLabel(names=["angular_leaf_spot", "bean_rust", "healthy"])})
    files = {}
    for i, (split, n) in enumerate(SPLIT_ROWS.items()):
        images = [{"bytes": png(1000 * i + j), "path": None} for j in range(n)]
        files[f"data/{split}-00000-of-00001.parquet"] = parquet(
            {"image_file_path": [f"/home/albert/.cache/beans/{split}/{j}.jpg" for j in range(n)],
             "image": images, "labels": [j % 3 for j in range(n)]}, feats)
    files["README.md"] = card({"default": {s: f"data/{s}-*" for s in SPLIT_ROWS}})
    return files


NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
POS_TAGS = ['"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR",
            "JJS", "LS", "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$", "RB", "RBR",
            "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$", "WRB"]
CHUNK_TAGS = ["O", "B-ADJP", "I-ADJP", "B-ADVP", "I-ADVP", "B-CONJP", "I-CONJP", "B-INTJ", "I-INTJ", "B-LST",
              "I-LST", "B-NP", "I-NP", "B-PP", "I-PP", "B-PRT", "I-PRT", "B-SBAR", "I-SBAR", "B-UCP", "I-UCP",
              "B-VP", "I-VP"]


def conll2003(_: Path) -> dict[str, bytes]:
    import datasets

    feats = datasets.Features({
        "id": datasets.Value("string"), "tokens": datasets.List(datasets.Value("string")),
        "pos_tags": datasets.List(datasets.ClassLabel(names=POS_TAGS)),
        "chunk_tags": datasets.List(datasets.ClassLabel(names=CHUNK_TAGS)),
        "ner_tags": datasets.List(datasets.ClassLabel(names=NER_TAGS))})
    files = {}
    for i, (split, n) in enumerate(SPLIT_ROWS.items()):
        rng = random.Random(200 + i)
        rows = {"id": [], "tokens": [], "pos_tags": [], "chunk_tags": [], "ner_tags": []}
        for j, s in enumerate(sentences(n, 210 + i, 4, 10)):
            tokens, tags = s.rstrip(".!?").split(), []
            tags = [0] * len(tokens)
            k = rng.randrange(len(tokens))
            tokens[k], tags[k] = rng.choice(NAMES), rng.choice([1, 3, 5, 7])
            tokens.append(".")
            tags.append(0)
            rows["id"].append(str(j))
            rows["tokens"].append(tokens)
            rows["ner_tags"].append(tags)
            rows["pos_tags"].append([21] * len(tokens))
            rows["chunk_tags"].append([11] * len(tokens))
        files[f"data/{split}-00000-of-00001.parquet"] = parquet(rows, feats)
    files["README.md"] = card({"default": {s: f"data/{s}-*" for s in SPLIT_ROWS}})
    return files


def squad(version_2: bool) -> Callable[[Path], dict[str, bytes]]:
    def build(_: Path) -> dict[str, bytes]:
        import datasets

        config = "squad_v2" if version_2 else "plain_text"
        feats = datasets.Features({
            "id": datasets.Value("string"), "title": datasets.Value("string"), "context": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": {"text": datasets.List(datasets.Value("string")), "answer_start": datasets.List(datasets.Value("int32"))}})
        files = {}
        for i, split in enumerate(["train", "validation"]):
            n = SPLIT_ROWS[split]
            rows = {"id": [], "title": [], "context": [], "question": [], "answers": []}
            for j, context in enumerate(sentences(n, 300 + i, 20, 40)):
                rng = random.Random(j)
                answer = rng.choice(NAMES)
                context = f"{context} It was {answer} who said so. {sentences(1, j)[0]}"
                rows["id"].append(f"{split[:1]}{j:023x}")
                rows["title"].append("Stand_in")
                rows["context"].append(context)
                rows["question"].append("Who said so?")
                if version_2 and j % 3 == 0:  # a third of SQuAD v2 questions have no answer
                    rows["answers"].append({"text": [], "answer_start": []})
                else:
                    n_ans = 1 if split == "train" else 3  # validation rows list several annotators' answers
                    rows["answers"].append({"text": [answer] * n_ans, "answer_start": [context.index(answer)] * n_ans})
            files[f"{config}/{split}-00000-of-00001.parquet"] = parquet(rows, feats)
        files["README.md"] = card({config: {s: f"{config}/{s}-*" for s in ["train", "validation"]}}, config)
        return files
    return build


def flickr8k(_: Path) -> dict[str, bytes]:
    import datasets

    feats = datasets.Features({"image": datasets.Image(), **{f"caption_{k}": datasets.Value("string") for k in range(5)}})
    files = {}
    for i, (split, n) in enumerate(SPLIT_ROWS.items()):
        rows = {"image": [{"bytes": png(5000 + 100 * i + j, 48), "path": None} for j in range(n)]}
        for k in range(5):
            rows[f"caption_{k}"] = sentences(n, 400 + 10 * i + k, 5, 10)
        files[f"data/{split}-00000-of-00001.parquet"] = parquet(rows, feats)
    files["README.md"] = card({"default": {s: f"data/{s}-*" for s in SPLIT_ROWS}})
    return files


def hh_rlhf(_: Path) -> dict[str, bytes]:
    def dialogue(seed: int, reply: str) -> str:
        q, a = sentences(2, seed)
        return f"\n\nHuman: {q}\n\nAssistant: {a}\n\nHuman: {sentences(1, seed + 7)[0]}\n\nAssistant: {reply}"

    def jsonl_gz(n: int, seed: int) -> bytes:
        lines = []
        for j in range(n):
            good, bad = sentences(2, seed * 100 + j)
            lines.append(json.dumps({"chosen": dialogue(seed * 100 + j, good), "rejected": dialogue(seed * 100 + j, bad)}))
        return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)

    files = {}
    for i, subset in enumerate(["harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled"]):
        files[f"{subset}/train.jsonl.gz"] = jsonl_gz(12, 10 * i)
        files[f"{subset}/test.jsonl.gz"] = jsonl_gz(4, 10 * i + 1)
    # red-team transcripts have another schema; the split patterns (train/test) leave this file out
    files["red-team-attempts/red_team_attempts.jsonl.gz"] = gzip.compress(
        json.dumps({"transcript": dialogue(1, "no"), "min_harmlessness_score_transcript": 0.5, "num_params": "52B",
                    "model_type": "plain lm", "rating": 0.0, "task_description": "x", "task_descripton_harmlessness_score": 0.1,
                    "red_team_member_id": 1, "is_upworker": False, "tags": None}).encode() + b"\n", mtime=0)
    files["README.md"] = b"---\nlicense: mit\ntags:\n- human-feedback\n---\n\n# Dataset Card for HH-RLHF (stand-in)\n"
    return files


# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Standin:
    repo_type: str                               # "model" or "dataset"
    build: Callable[[Path], dict[str, bytes]]    # folder to work in -> {path in repo: bytes}
    source: str                                  # what the stand-in follows, and what is unverified
    notes: list[str] = field(default_factory=list)


STANDINS: dict[str, Standin] = {
    # ---- models
    "google-bert/bert-base-uncased": Standin("model", bert_model(True),
        "config.json (BertForMaskedLM, model_type bert, 512 positions, type_vocab_size 2, pad 0); tokenizer: "
        "BertTokenizerFast, do_lower_case, [PAD]=0 [UNK]=100 [CLS]=101 [SEP]=102 [MASK]=103 (vocab.txt layout)"),
    "google-bert/bert-base-cased": Standin("model", bert_model(False),
        "as bert-base-uncased with do_lower_case=False (cased vocab); same special-token ids"),
    "openai-community/gpt2": Standin("model", gpt2_model,
        "config.json (GPT2LMHeadModel, n_positions 1024, bos=eos=<|endoftext|>); tokenizer: GPT2TokenizerFast, "
        "byte-level BPE, <|endoftext|> as bos/eos/unk and the last id, NO pad token"),
    "lvwerra/gpt2-imdb": Standin("model", gpt2_model,
        "a GPT-2 fine-tuned on IMDB: same architecture and tokenizer as openai-community/gpt2 (model card)"),
    "facebook/bart-base": Standin("model", bart_model,
        "config.json (architectures BartModel, pad 1, bos 0, eos 2, decoder_start 2, forced_bos 0, forced_eos 2, "
        "1024 positions); tokenizer: BartTokenizerFast (byte-level BPE), <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last"),
    "Helsinki-NLP/opus-mt-en-fr": Standin("model", marian_model,
        "config.json (MarianMTModel, eos 0, pad = decoder_start = the last id, scale_embedding, swish, shared "
        "embeddings); tokenizer: MarianTokenizer (source.spm, target.spm, vocab.json with </s>=0 <unk>=1 <pad> last)"),
    "google/vit-base-patch16-224-in21k": Standin("model", vit_model,
        "config.json (ViTModel, image 224, patch 16, 3 channels: no classifier head, no labels); "
        "preprocessor_config.json: ViTImageProcessor, resize 224x224, mean = std = 0.5"),
    "HuggingFaceTB/SmolLM2-135M-Instruct": Standin("model", smollm2_model,
        "config.json (LlamaForCausalLM, model_type llama, bos 1, eos 2, pad 2, tie_word_embeddings, 8192 positions) and "
        "generation_config.json (bos 1, eos 2, pad 2), read off the Hub's files; tokenizer: GPT2 byte-level BPE with "
        "<|endoftext|>=0 <|im_start|>=1 <|im_end|>=2 as unk/bos/eos (pad <|im_end|>: UNVERIFIED), a ChatML chat template "
        "with a default system turn (wording UNVERIFIED)"),
    "lvwerra/distilbert-imdb": Standin("model", distilbert_imdb,
        "config.json (DistilBertForSequenceClassification, id2label {0: NEGATIVE, 1: POSITIVE}); tokenizer: "
        "DistilBertTokenizerFast, uncased, BERT special tokens"),
    # ---- data sets
    "stanfordnlp/sst2": Standin("dataset", sst2,
        "card: features idx int32, sentence string, label ClassLabel [negative, positive]; splits train / "
        "validation / test (test labels -1); data/{split}-*.parquet, config default"),
    "stanfordnlp/imdb": Standin("dataset", imdb,
        "card: config plain_text (default); features text string, label ClassLabel [neg, pos]; splits train / "
        "test / unsupervised (labels -1); plain_text/{split}-*.parquet; reviews hold '<br /><br />'"),
    "trl-lib/tldr": Standin("dataset", tldr,
        "card (2025 revision: YAML has only tags: trl, no configs): prompt string ('SUBREDDIT: ... POST: ... TL;DR:'), "
        "completion string; data/{train,validation,test}-*.parquet, splits from the file names"),
    "trl-lib/Capybara": Standin("dataset", capybara,
        "card (dataset_info, seen on a verified duplicate of trl-lib/Capybara): features source string, messages list of "
        "{content string, role string}, num_turns int64; splits train (15,806) / test (200); configs default with "
        "data/train-* and data/test-*"),
    "abisee/cnn_dailymail": Standin("dataset", cnn_dailymail,
        "card and viewer: configs 1.0.0 / 2.0.0 / 3.0.0 (no default: a config name is required); features article, "
        "highlights, id (strings); splits train / validation / test (287k / 13.4k / 11.5k); {config}/{split}-*.parquet "
        "(the real train split is sharded: shard count and the card's `default` flag UNVERIFIED)"),
    "Helsinki-NLP/opus_books": Standin("dataset", opus_books,
        "card: one config per language pair (16 pairs, en-fr among them; only 4 served here), one split train; "
        "features id string, translation Translation[en, fr]; {pair}/train-*.parquet (en-fr/train-00000-of-00001.parquet "
        "seen in the repo's history)"),
    "Salesforce/wikitext": Standin("dataset", wikitext,
        "card: configs wikitext-103-raw-v1, wikitext-103-v1, wikitext-2-raw-v1, wikitext-2-v1; feature text string "
        "(blank lines and ' = Heading = ' lines included); splits test / train / validation"),
    "AI-Lab-Makerere/beans": Standin("dataset", beans,
        "card: features image_file_path string, image Image, labels ClassLabel [angular_leaf_spot, bean_rust, "
        "healthy]; splits train / validation / test (1,034 / 133 / 128 real rows); config default, "
        "data/{split}-*.parquet (all from the card's YAML); real images are 500x500 JPEG (small PNG here)"),
    "lhoestq/conll2003": Standin("dataset", conll2003,
        "the conll2003 card's features: id string, tokens list[string], pos_tags / chunk_tags / ner_tags "
        "list[ClassLabel] (ner: O B-PER I-PER B-ORG I-ORG B-LOC I-LOC B-MISC I-MISC); splits train / validation / "
        "test. lhoestq's parquet copy keeping these ClassLabel features and its data/ layout: UNVERIFIED"),
    "rajpurkar/squad": Standin("dataset", squad(False),
        "card: config plain_text; features id, title, context, question (strings), answers {text list[string], "
        "answer_start list[int32]}; splits train / validation (validation rows list several answers)"),
    "rajpurkar/squad_v2": Standin("dataset", squad(True),
        "card: config squad_v2; the squad features; unanswerable questions have empty answers lists; "
        "splits train / validation"),
    "jxie/flickr8k": Standin("dataset", flickr8k,
        "image Image, caption_0 .. caption_4 strings; splits train / validation / test (6,000 / 1,000 / 1,000): "
        "from the recipe's comment, card UNVERIFIED (no page for jxie/flickr8k found); data/ layout UNVERIFIED"),
    "Anthropic/hh-rlhf": Standin("dataset", hh_rlhf,
        "repo layout: {harmless-base, helpful-base, helpful-online, helpful-rejection-sampled}/{train,test}.jsonl.gz "
        "with chosen / rejected strings ('\\n\\nHuman: ... \\n\\nAssistant: ...'), plus red-team-attempts/ "
        "(another schema, not a split); no configs in the card: splits train / test from the file names"),
}


def build(repo_id: str, workdir: Path) -> dict[str, bytes]:
    """The files of `repo_id`'s stand-in, built in `workdir/<repo_id>`."""
    folder = workdir / STANDINS[repo_id].repo_type / repo_id
    folder.mkdir(parents=True, exist_ok=True)
    return STANDINS[repo_id].build(folder)


def without_column(files: dict[str, bytes], column: str) -> dict[str, bytes]:
    """The same repo with `column` removed from every parquet data file (to check a recipe's column error)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {}
    for path, data in files.items():
        if path.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(data))
            if column in table.column_names:
                meta = dict(table.schema.metadata or {})
                if b"huggingface" in meta:  # datasets' own copy of the features
                    info = json.loads(meta[b"huggingface"])
                    info.get("info", {}).get("features", {}).pop(column, None)
                    meta[b"huggingface"] = json.dumps(info).encode()
                table = table.drop_columns([column]).replace_schema_metadata(meta)
                buf = io.BytesIO()
                pq.write_table(table, buf)
                data = buf.getvalue()
        out[path] = data
    return out
