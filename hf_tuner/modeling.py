"""Models and tokenizers: load from the Hub / a folder / `packaged:`, build from scratch, train a
tokenizer, switch LoRA on, count parameters, pick the precision. (A run folder's model files are
`rundir`'s.)"""
from __future__ import annotations

import contextlib
import contextvars
import json
from pathlib import Path
from typing import Any, Iterable, Optional

from .config import LoraConfig, ModelConfig, RunConfig
from .errors import ConfigError, HfTunerError, did_you_mean, listing
from .packaged import is_packaged, resolve_model, run_folder_hint

# LoRA target modules per model_type (peft 0.21 / transformers 5 module names).
LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "camembert": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta-v2": ["query_proj", "value_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "bart": ["q_proj", "v_proj"],
    "mbart": ["q_proj", "v_proj"],
    "marian": ["q_proj", "v_proj"],
    "pegasus": ["q_proj", "v_proj"],
    "t5": ["q", "v"],
    "vit": ["q_proj", "v_proj"],
    "deit": ["q_proj", "v_proj"],
}


def model_source(cfg: ModelConfig) -> str:
    """The folder or Hub id to load from (packaged names resolved), checked for obvious mistakes."""
    name = resolve_model(cfg.name_or_path) if is_packaged(cfg.name_or_path) else cfg.name_or_path
    assert name is not None
    path = Path(name).expanduser()
    # runs/NAME of a bundled recipe is a run folder, not a Hub id (an "org/name" would look the same)
    looks_local = name.startswith((".", "/", "~")) or path.exists() or name.count("/") > 1 or bool(run_folder_hint(name))
    if looks_local:
        if not path.exists():
            hint = run_folder_hint(name) or " (model.name_or_path takes a folder, a Hub id or packaged:NAME)"
            raise ConfigError(f"model path does not exist: {name}{hint}")
        if path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ConfigError(f"{name} is not a model folder: it has no config.json")
        return str(path.resolve())
    return name


def describe_load_error(name: str, exc: BaseException) -> HfTunerError:
    """Turn transformers' long load failures into one line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    import os

    if os.environ.get("HF_HUB_OFFLINE") == "1" and "/" in name:
        return HfTunerError(f"cannot load '{name}' from the Hub: offline mode (HF_HUB_OFFLINE=1) and it is not in the local cache", 2)
    return HfTunerError(f"cannot load model '{name}': {text}", 2)


def load_config_for(cfg: ModelConfig, **config_kwargs: Any):
    """AutoConfig of the model: from its folder/Hub id, or built from `model.from_scratch`."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if cfg.from_scratch is not None:
        model_type = cfg.from_scratch.model_type
        if model_type not in CONFIG_MAPPING:
            raise ConfigError(f"unknown model.from_scratch.model_type '{model_type}'{did_you_mean(model_type, CONFIG_MAPPING.keys())}")
        config = AutoConfig.for_model(model_type)
        for key, value in {**cfg.from_scratch.overrides(), **config_kwargs}.items():
            if not hasattr(config, key) and key not in config_kwargs:
                raise ConfigError(f"model.from_scratch.{key} is not a {model_type} config value{did_you_mean(key, config.to_dict())}")
            setattr(config, key, value)
        return config
    name = model_source(cfg)
    try:
        return AutoConfig.from_pretrained(name, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, **config_kwargs)
    except (OSError, ValueError) as exc:
        raise describe_load_error(name, exc) from None


_META = contextvars.ContextVar("hf_tuner_meta_models", default=False)


@contextlib.contextmanager
def meta_models():
    """Within it, `load_model` builds models on the meta device: every parameter with its real shape
    and dtype, no memory and no weights read (what `hf-tuner plan` counts)."""
    token = _META.set(True)
    try:
        yield
    finally:
        _META.reset(token)


def load_model(auto_class: Any, cfg: ModelConfig, config: Any, dtype: Any = None, notes: Optional[list[str]] = None):
    """Instantiate `auto_class` (e.g. AutoModelForSequenceClassification) with pretrained weights
    when the recipe names a checkpoint, or freshly initialised for `from_scratch`."""
    if _META.get():
        import torch

        with torch.device("meta"):
            return auto_class.from_config(config, **({"dtype": dtype} if dtype is not None else {}))
    if cfg.from_scratch is not None:
        return auto_class.from_config(config)
    name = model_source(cfg)
    kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    replaced = replaced_head(name, cfg, config)
    if replaced:
        kwargs["ignore_mismatched_sizes"] = True  # keep the body, start a new head of the right size
    note = replaced or other_head(name, cfg, auto_class)
    if note and notes is not None:
        notes.append(note)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    if note:  # the note says it in one line: no multi-line LOAD REPORT from transformers as well
        hf_logging.set_verbosity_error()
    try:
        return auto_class.from_pretrained(
            name, config=config, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, **kwargs)
    except (OSError, ValueError) as exc:
        raise describe_load_error(name, exc) from None
    finally:
        hf_logging.set_verbosity(verbosity)


HEAD_SUFFIXES = ("ForSequenceClassification", "ForImageClassification", "ForTokenClassification", "ForQuestionAnswering")


def replaced_head(name: str, cfg: ModelConfig, config: Any) -> Optional[str]:
    """A one-line note when the checkpoint has a trained classifier head of another size than
    `config` asks for (e.g. ImageNet's 1,000 classes, tuned on 3), else None."""
    from transformers import AutoConfig

    try:
        own = AutoConfig.from_pretrained(name, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError):
        return None
    heads = [a for a in (getattr(own, "architectures", None) or []) if a.endswith(HEAD_SUFFIXES)]
    wanted = getattr(config, "num_labels", None)
    if not heads or wanted is None or own.num_labels == wanted:
        return None
    labels = [str(v) for _, v in sorted((getattr(own, "id2label", None) or {}).items())]
    shown = f" ({listing(labels, 5)})" if labels and not all(l.startswith("LABEL_") for l in labels) else ""
    return (f"model: the checkpoint's classifier head has {own.num_labels} classes{shown}; it was replaced by a new, "
            f"untrained head for {wanted} classes")


def other_head(name: str, cfg: ModelConfig, auto_class: Any) -> Optional[str]:
    """A one-line note when a model with a task head (`auto_class` AutoModelFor...Classification or
    ...QuestionAnswering) starts from a checkpoint with a head of another kind (e.g. a BertForMaskedLM
    after domain adaptation, or a sentence classifier tagging tokens): that head
    is left out and the classifier head is new. A bare encoder (BertModel) has no head: no note."""
    from transformers import AutoConfig

    wanted = getattr(auto_class, "__name__", "").removeprefix("AutoModel")
    if wanted not in HEAD_SUFFIXES:
        return None
    try:
        own = AutoConfig.from_pretrained(name, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError):
        return None
    others = [a for a in (getattr(own, "architectures", None) or []) if "For" in a and not a.endswith(wanted)]
    if not others:
        return None
    return f"model: the checkpoint is a {others[0]}: its head is left out and a new, untrained {wanted[3:]} head is added"


def load_tokenizer(cfg: ModelConfig, texts: Optional[Iterable[str]] = None, kind: str = "causal"):
    """The tokenizer of the model, another named one, or one trained on `texts`."""
    from transformers import AutoTokenizer

    tok_cfg = cfg.tokenizer
    if tok_cfg is not None and tok_cfg.train:
        if texts is None:
            raise HfTunerError("internal: tokenizer training needs the training texts")
        tokenizer = train_tokenizer(texts, tok_cfg.type, tok_cfg.vocab_size, tok_cfg.min_frequency, kind)
    else:
        name = resolve_model(tok_cfg.name_or_path) if tok_cfg is not None and tok_cfg.name_or_path else model_source(cfg)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise describe_load_error(name, exc) from None
    if tok_cfg is not None and tok_cfg.chat_template:
        set_chat_template(tokenizer, tok_cfg.chat_template)
    return tokenizer


# Built-in chat templates (`model.tokenizer.chat_template: NAME`) for tokenizers that have none: the
# template, the special tokens it needs, and the token that ends a turn (the tokenizer's eos from then on,
# so generation, `predict` and a plain transformers pipeline stop at the end of the assistant's turn).
# The {% generation %} block marks the assistant's part for transformers' `return_assistant_tokens_mask`
# (TRL's assistant_only_loss); hf-tuner finds it by rendering (`tasks/parts/chat.py`), so any template works.
CHATML = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHAT_TEMPLATES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "chatml": (CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
}


def set_chat_template(tokenizer: Any, value: str) -> Any:
    """Give `tokenizer` the chat template `value` names: a built-in name (CHAT_TEMPLATES: its special
    tokens added, its end-of-turn token made the eos), a Jinja template, or a .jinja file. The template
    is saved with the tokenizer (chat_template.jinja) wherever the run saves it."""
    if value.strip().lower() in CHAT_TEMPLATES:
        template, specials, end = CHAT_TEMPLATES[value.strip().lower()]
        missing = [t for t in specials if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
        tokenizer.eos_token = end
        tokenizer.chat_template = template
    else:
        tokenizer.chat_template = read_chat_template(value)
    return tokenizer


def read_chat_template(value: str) -> str:
    """`model.tokenizer.chat_template`: a Jinja template, or the path of a file holding one."""
    path = Path(value).expanduser()
    if value.endswith((".jinja", ".j2", ".txt")) or ("{" not in value and path.exists()):
        if not path.is_file():
            raise ConfigError(f"model.tokenizer.chat_template: file not found: {value}")
        return path.read_text(encoding="utf-8")
    if "{" not in value:
        raise ConfigError(f"model.tokenizer.chat_template: '{value}' is not a built-in template ({', '.join(CHAT_TEMPLATES)}), "
                          "a Jinja template (it has no '{') or an existing file")
    return value


def train_tokenizer(texts: Iterable[str], kind: str, vocab_size: int, min_frequency: int = 2, model_kind: str = "causal"):
    """Train a tokenizer with the `tokenizers` library and wrap it as a PreTrainedTokenizerFast.

    `byte-level-bpe` (GPT-2 / BART style, no unknown tokens) or `wordpiece` (BERT style).
    `model_kind` picks the special tokens: "causal" (GPT-2: one <|endoftext|> used as bos/eos/pad),
    "encoder-decoder" (BART: <s> <pad> </s> <unk> <mask>) or "encoder" (BERT: [PAD] [UNK] [CLS] [SEP] [MASK]).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "wordpiece" or model_kind == "encoder":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
            sep_token="[SEP]", mask_token="[MASK]",
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if model_kind == "encoder-decoder":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    else:
        specials = ["<|endoftext|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if model_kind == "encoder-decoder":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
            unk_token="<unk>", mask_token="<mask>",
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        pad_token="<|endoftext|>", unk_token="<|endoftext|>",
    )


def apply_lora(model: Any, lora: LoraConfig, task_type: Optional[str], modules_to_save: Optional[list[str]] = None):
    """Wrap `model` in a peft LoRA model; defaults for target modules come from LORA_TARGETS."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    model_type = getattr(model.config, "model_type", "")
    targets = lora.target_modules or LORA_TARGETS.get(model_type) or "all-linear"
    save = list(lora.modules_to_save or []) + [m for m in (modules_to_save or []) if m not in (lora.modules_to_save or [])]
    peft_config = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
        bias=lora.bias, task_type=task_type, modules_to_save=save or None,
    )
    try:
        return get_peft_model(model, peft_config)
    except Exception as exc:  # peft raises ValueError or NoMatchingPeftModuleError, depending on the case
        text = str(exc)
        if type(exc).__name__ == "NoMatchingPeftModuleError" or "not found in the base model" in text or "Target modules" in text:
            names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _is_linear(m)})
            raise ConfigError(
                f"LoRA target modules {targets} match nothing in this {model_type or 'model'}; "
                f"its linear layers are: {listing(names)} (or use method.lora.target_modules=all-linear)"
            ) from None
        raise


def _is_linear(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def load_saved_processor(auto_name: str, path: str | Path) -> Any:
    """A trained model's tokenizer or processor (`auto_name`: AutoTokenizer, AutoImageProcessor...)."""
    import transformers

    try:
        return getattr(transformers, auto_name).from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise describe_load_error(str(path), exc) from None


def model_labels(model_path: str) -> tuple[Optional[list[str]], int]:
    """(label names in id order, num_labels) of a classifier; names None when they are LABEL_0.. defaults."""
    from transformers import AutoConfig

    path = Path(model_path)
    source = model_path
    if path.is_dir() and not (path / "config.json").is_file() and (path / "adapter_config.json").is_file():
        source = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise describe_load_error(source, exc) from None
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    n = getattr(config, "num_labels", len(id2label))
    names = [id2label[i] for i in range(len(id2label))] if id2label else None
    if names and all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        names = None
    return names, n


def choose_precision(cfg: RunConfig) -> dict[str, bool]:
    """bf16/fp16 flags from the recipe where set, else from the hardware (bf16 on GPUs that have
    it, fp16 on older GPUs, full precision on CPU)."""
    import torch

    cuda = torch.cuda.is_available() and not cfg.training.use_cpu
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    bf16, fp16 = cfg.training.bf16, cfg.training.fp16
    if fp16 and not cuda:
        raise ConfigError("training.fp16=true needs a CUDA GPU and none is in use: remove it or set training.fp16=false")
    if bf16 and not bf16_ok:
        if cuda:
            raise ConfigError("training.bf16=true but this GPU has no bf16 support: use training.fp16=true instead")
        raise ConfigError("training.bf16=true but training runs on the CPU: remove it or set training.bf16=false")
    if bf16 is None and fp16 is None:
        return {"bf16": bool(bf16_ok), "fp16": bool(cuda and not bf16_ok)}
    return {"bf16": bool(bf16), "fp16": bool(fp16)}


def quiet_libraries() -> None:
    """Keep the console for progress bars and hf-tuner's own lines."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # weight-loading bars; training keeps its own
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=FutureWarning)


def has_accelerator() -> bool:
    """True when a CUDA or MPS device is there."""
    import torch

    return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
