"""Task `image-captioning`: a `VisionEncoderDecoderModel` (a ViT encoder, a GPT-2 decoder with new
cross-attention) that writes a caption per image.

Model: a whole encoder-decoder checkpoint or run folder (`model.name_or_path`), or both halves built
from scratch (`model.from_scratch: {model_type: vision-encoder-decoder, encoder: {ViT config values},
decoder: {GPT-2 config values}}`) with a tokenizer trained on the captions and a ViT image processor
of the encoder's size. `decoder_start_token_id` (the tokenizer's bos), `pad_token_id` and
`eos_token_id` are set on the model config and on the generation config the run saves.

Data: an image column (files, an imagefolder with `metadata.jsonl` / `metadata.csv`, or a Hub image
column) and a caption column holding one caption or a list of captions per image. Training has one
row per caption; evaluation one row per image, scored against all of its captions.

Loss: labels are the caption's tokens and eos, padded with -100 by length (the attention mask), not
by token id: GPT-2's pad token is its eos, and masking by id would hide the real eos, so the model
would never learn to stop. Metrics: the loss, and on generated captions (THE generation loop)
BLEU-4 and ROUGE-L against every reference, CIDEr-D (pycocoevalcap's scorer, the `captioning` extra)
and the exact-match share. transformers 5 has no image-to-text pipeline: `predict` runs `generate`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from pydantic import Field

from ..config import DataConfig, RunConfig
from ..data import Splits
from ..errors import ConfigError, DataError
from .base import CardInfo, DataPart, Family, Job, Loaded, Objective, Task, ensure_pad_token, load_checked, model_of
from .parts.images import DEFAULT_IMAGE_SIZE, as_image_column, base_dir, build_image_processor, check_images, open_image, processor_size
from .parts.loops import generate

IGNORE = -100
SCRATCH_TYPE = "vision-encoder-decoder"
CIDER_HINT = "CIDEr-D needs pycocoevalcap: pip install 'hf-tuner[captioning]'"
SHEET_SAMPLES = 16  # images on a sample sheet
CAPTIONS = "captions"  # the column several caption columns are merged into


class CaptioningData(DataConfig):
    """`data:` of image captioning: an image column and a caption column (a caption or a list)."""

    image_column: str = "image"
    # a column of captions (a caption or a list per row), or several columns of one caption each
    caption_column: Union[str, list[str]] = "caption"
    max_target_length: int = Field(32, ge=4)
    image_size: Optional[int] = Field(None, ge=8)


# ------------------------------------------------------------------------------------------ processing


class CaptionProcessing:
    """A tokenizer and an image processor, saved side by side in one folder (what the Trainer
    saves with checkpoints and a run folder holds; `AutoTokenizer` and `AutoImageProcessor` each
    load their half from it)."""

    def __init__(self, tokenizer: Any, image_processor: Any):
        self.tokenizer, self.image_processor = tokenizer, image_processor

    def save_pretrained(self, path: Any, **kwargs: Any) -> None:
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path: Any) -> "CaptionProcessing":
        from ..modeling import load_saved_processor

        return cls(ensure_pad_token(load_saved_processor("AutoTokenizer", path), add_eos=True),
                   load_saved_processor("AutoImageProcessor", path))

    def images(self, images: list[Any]) -> Any:
        return self.image_processor(images, return_tensors="pt")["pixel_values"]


def scratch_parts(job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    """The encoder and decoder config values of `model.from_scratch` (a vision-encoder-decoder)."""
    values = job.cfg.model.from_scratch.overrides()
    encoder, decoder = dict(values.get("encoder") or {}), dict(values.get("decoder") or {})
    unknown = sorted(set(values) - {"encoder", "decoder"})
    if unknown:
        raise ConfigError(f"model.from_scratch.{unknown[0]}: a vision-encoder-decoder from scratch takes only "
                          "encoder: {model_type: vit, ...} and decoder: {model_type: gpt2, ...}")
    return encoder, decoder


def image_size_of(job: Job) -> int:
    d, m = job.cfg.data, job.cfg.model
    if m.from_scratch is not None:
        own = scratch_parts(job)[0].get("image_size")
        if d.image_size and own and int(own) != d.image_size:
            raise ConfigError(f"data.image_size={d.image_size} but model.from_scratch.encoder.image_size={own}: set one")
        return int(d.image_size or own or DEFAULT_IMAGE_SIZE)
    return int(d.image_size or DEFAULT_IMAGE_SIZE)


@dataclass(frozen=True, kw_only=True)
class VisionEncoderDecoderFamily(Family):
    """`VisionEncoderDecoderModel`: ViT encoder, GPT-2 decoder (cross-attention), a tokenizer and an
    image processor (`CaptionProcessing`)."""

    auto_model: str = "VisionEncoderDecoderModel"
    peft_task_type: Optional[str] = None  # peft has no task type for it: a plain PeftModel, all linear layers of both halves
    two_halves: bool = True

    def build_processing(self, job: Job, splits: Splits) -> Any:
        m = job.cfg.model
        if m.from_scratch is not None:
            if m.from_scratch.model_type != SCRATCH_TYPE:
                raise ConfigError(f"model.from_scratch.model_type must be {SCRATCH_TYPE} (with encoder: and decoder: "
                                  "config values) for image captioning")
            tokenizer = super().build_processing(job, splits)
            encoder = scratch_parts(job)[0]
            return CaptionProcessing(tokenizer, build_image_processor(image_size_of(job), int(encoder.get("num_channels", 3))))
        from transformers import AutoImageProcessor

        from ..modeling import load_tokenizer, model_source

        vision, text = halves(m) if m.encoder else (m, m)
        tokenizer = ensure_pad_token(load_tokenizer(text), add_eos=True)
        try:
            processor = AutoImageProcessor.from_pretrained(model_source(vision), revision=vision.revision)
        except (OSError, ValueError):
            processor = build_image_processor(image_size_of(job), 3)
        if job.cfg.data.image_size and processor_size(processor) not in (None, job.cfg.data.image_size):
            raise ConfigError(f"data.image_size={job.cfg.data.image_size} but the checkpoint's image processor takes "
                              f"{processor_size(processor)}: remove data.image_size")
        return CaptionProcessing(tokenizer, processor)

    def fix_processing(self, processing: Any) -> Any:
        return ensure_pad_token(processing, add_eos=True)

    def build_model(self, job: Job, splits: Splits, processing: Any) -> Any:
        """Both halves built from scratch, two pretrained halves joined, or one encoder-decoder checkpoint."""
        from ..modeling import load_config_for, load_model

        m = job.cfg.model
        if m.from_scratch is not None:
            config = scratch_config(job, processing.tokenizer)
            model = load_model(ScratchBuilder, m, config, notes=job.notes)
            job.notes.append("model: encoder, decoder and the decoder's cross-attention are new (built from scratch)")
        elif m.encoder:
            model = join_halves(job)
        else:
            import transformers

            config = load_config_for(m)
            if getattr(config, "model_type", "") != SCRATCH_TYPE:
                raise ConfigError(f"model.name_or_path: {m.name_or_path} is a {getattr(config, 'model_type', '?')} model, "
                                  "not a vision-encoder-decoder (an image encoder with a text decoder)")
            model = load_model(transformers.VisionEncoderDecoderModel, m, config, notes=job.notes)
        return model

    def fix_up(self, job: Job, model: Any, processing: Any) -> Any:
        tokenizer = processing.tokenizer
        if len(tokenizer) > model.decoder.get_input_embeddings().num_embeddings:
            model.decoder.resize_token_embeddings(len(tokenizer))
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = {"decoder_start_token_id": start, "pad_token_id": tokenizer.pad_token_id,
               "eos_token_id": tokenizer.eos_token_id, "bos_token_id": start}
        for key, value in ids.items():
            setattr(model.config, key, value)
            setattr(model.generation_config, key, value)
        model.generation_config.max_length = None
        model.generation_config.max_new_tokens = job.cfg.data.max_target_length
        positions = getattr(model.decoder.config, "n_positions", None) or getattr(model.decoder.config, "max_position_embeddings", None)
        if positions and job.cfg.data.max_target_length + 1 > positions:
            raise ConfigError(f"data.max_target_length={job.cfg.data.max_target_length} does not fit the decoder's "
                              f"{positions} positions: lower data.max_target_length")
        return model

    def load_trained_processing(self, path: Any) -> Any:
        return CaptionProcessing.from_pretrained(path)

    def probe_inputs(self, loaded: Loaded) -> dict[str, Any]:
        import torch

        size = loaded.model.config.encoder.image_size
        size = size if isinstance(size, int) else size[0]
        channels = getattr(loaded.model.config.encoder, "num_channels", 3)
        generator = torch.Generator().manual_seed(0)
        start = loaded.model.config.decoder_start_token_id
        return {"pixel_values": torch.rand(2, channels, size, size, generator=generator),
                "decoder_input_ids": torch.tensor([[start, start], [start, start]])}

    def caption(self, loaded: Loaded, images: list[Any], options: dict[str, Any], batch_size: int = 16) -> list[str]:
        """A caption per PIL image (THE generation loop)."""
        processing = loaded.processing
        rows = generate(loaded.model, images, lambda b: {"pixel_values": processing.images(b).to(loaded.model.device)},
                        options, 0, batch_size)
        eos = processing.tokenizer.eos_token_id
        rows = [r[1:] for r in rows]  # an encoder-decoder's output starts with the decoder start token (GPT-2: eos)
        return [processing.tokenizer.decode(r[:r.index(eos)] if eos in r else r, skip_special_tokens=True).strip()
                for r in rows]


def halves(m: Any) -> tuple[Any, Any]:
    """The ModelConfigs of `model.encoder` and `model.decoder`, each as a one-checkpoint model."""
    def one(name: str) -> Any:
        return m.model_copy(update={"name_or_path": name, "encoder": None, "decoder": None})

    return one(m.encoder), one(m.decoder)


def has_cross_attention(model: Any) -> bool:
    names = ("crossattention", "cross_attn", "encoder_attn")
    return any(any(n in name for n in names) for name, _ in model.named_modules())


def join_halves(job: Job) -> Any:
    """A pretrained vision encoder (a Hub id, a folder or an image-classification run) and a
    pretrained text decoder (GPT-2 family; a causal-lm run) joined by new cross-attention layers."""
    import transformers

    from ..modeling import load_config_for, load_model

    vision, text = halves(job.cfg.model)
    enc_config = load_config_for(vision)
    try:  # the class AutoModel would build, so a text model is refused before its weights load
        takes = transformers.AutoModel._model_mapping[type(enc_config)].main_input_name
    except (KeyError, AttributeError):
        takes = "pixel_values"
    encoder = load_model(transformers.AutoModel, vision, enc_config) if takes == "pixel_values" else None
    if encoder is None or getattr(encoder, "main_input_name", "") != "pixel_values":
        raise ConfigError(f"model.encoder: {vision.name_or_path} is a {enc_config.model_type} model, not a vision encoder "
                          "(it does not take images): use a ViT-family checkpoint")
    dec_config = load_config_for(text, is_decoder=True, add_cross_attention=True)
    decoder = load_model(transformers.AutoModelForCausalLM, text, dec_config)
    if not has_cross_attention(decoder):
        raise ConfigError(f"model.decoder: {text.name_or_path} is a {dec_config.model_type} decoder without "
                          "cross-attention, so it cannot read the image: use a GPT-2 (or BERT-family) decoder")
    job.notes.append(f"model: the decoder's cross-attention layers are new and untrained ({vision.name_or_path} and "
                     f"{text.name_or_path} are pretrained)")
    return transformers.VisionEncoderDecoderModel(encoder=encoder, decoder=decoder)


class ScratchBuilder:
    """`modeling.load_model`'s view of a vision encoder-decoder built from configs (`from_config`),
    on the meta device under `hf-tuner plan`."""

    @staticmethod
    def from_config(config: Any, **kwargs: Any) -> Any:
        from transformers import VisionEncoderDecoderModel

        return VisionEncoderDecoderModel(config=config)


def scratch_config(job: Job, tokenizer: Any) -> Any:
    from transformers import AutoConfig, VisionEncoderDecoderConfig

    encoder, decoder = scratch_parts(job)
    enc_type, dec_type = encoder.pop("model_type", "vit"), decoder.pop("model_type", "gpt2")
    encoder["image_size"] = image_size_of(job)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    decoder.update(vocab_size=len(tokenizer), bos_token_id=start, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id, is_decoder=True, add_cross_attention=True)
    try:
        enc_cfg, dec_cfg = AutoConfig.for_model(enc_type, **encoder), AutoConfig.for_model(dec_type, **decoder)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"model.from_scratch: {str(exc).splitlines()[0]}") from None
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc_cfg, dec_cfg)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = start, tokenizer.pad_token_id, tokenizer.eos_token_id
    return config


# ------------------------------------------------------------------------------------------ data



def as_references(value: Any) -> list[str]:
    """A caption cell -> its captions (a string, or a list of strings), blanks left out."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip()]


def caption_columns(job: Job) -> list[str]:
    value = job.cfg.data.caption_column
    return [value] if isinstance(value, str) else list(value)


def check_captions(ds: Any, column: str, split: str) -> None:
    for i, value in enumerate(ds[column]):
        if not as_references(value):
            raise DataError(f"caption column '{column}' has no caption in the {split} data (row {i}): drop or fill such rows")


class CaptionedImages(DataPart):
    """An image and one or more captions per row; training on every caption, evaluation per image
    against all of them. Images are checked when loaded and processed on the fly."""

    schema = CaptioningData

    def load(self, job: Job) -> Splits:
        d = job.cfg.data
        spec = {"validation": d.validation, "test": d.test}

        captions = caption_columns(job)

        def as_images(name: str, ds: Any) -> Any:
            if len(captions) > 1:  # several caption columns -> one list column
                merged = [[row[c] for c in captions] for row in ds.select_columns(captions)]
                ds = ds.remove_columns(captions).add_column(CAPTIONS, merged)
            return as_image_column(ds, d.image_column, base_dir(spec.get(name) or d.train), name)

        def check(name: str, ds: Any) -> None:
            check_captions(ds, self.caption_column(job), name)
            check_images(ds, d.image_column, name)

        keys = {"image_column": d.image_column}
        keys.update({"caption_column" if len(captions) == 1 else f"caption_column[{i}]": c for i, c in enumerate(captions)})
        return load_checked(job, keys, after=as_images, check=check)

    def caption_column(self, job: Job) -> str:
        """The column of captions once loaded (several caption columns are merged into one)."""
        captions = caption_columns(job)
        return captions[0] if len(captions) == 1 else CAPTIONS

    def training_texts(self, job: Job, splits: Splits) -> Iterator[str]:
        for value in splits.train[self.caption_column(job)]:
            yield from as_references(value)

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        d = job.cfg.data
        image, caption = d.image_column, self.caption_column(job)

        def rows(name: str, ds: Any) -> Any:
            def explode(batch: dict[str, list]) -> dict[str, list]:
                out: dict[str, list] = {"image": [], "references": [], "caption": []}
                for img, value in zip(batch[image], batch[caption]):
                    refs = as_references(value)
                    for ref in (refs if name == "train" else refs[:1]):  # evaluation: one row per image
                        out["image"].append(img)
                        out["references"].append(refs)
                        out["caption"].append(ref)
                return out

            ds = ds.map(explode, batched=True, remove_columns=ds.column_names, desc=f"Captions of {name}")
            return ds.with_transform(CaptionTransform(processing, d.max_target_length))

        return splits.map(rows)

    def collator(self, job: Job, processing: Any) -> Any:
        return collate_captions

    def defaults(self, job: Job) -> dict[str, Any]:
        return {"remove_unused_columns": False, "label_names": ["labels"]}

    def memory_sequence(self, job: Job, model_config: Any, lengths: list[Any]) -> int:
        encoder = getattr(model_config, "encoder", None)
        patch, size = getattr(encoder, "patch_size", None), getattr(encoder, "image_size", None)
        patches = (size // patch) ** 2 + 1 if patch and isinstance(size, int) else 1
        return max(patches, job.cfg.data.max_target_length)

    def encode_inputs(self, job: Job, loaded: Loaded, batch: list[str]) -> dict[str, Any]:
        for item in batch:
            if not Path(item).expanduser().is_file():
                raise DataError(f"image not found: {item} (predict takes paths of image files)")
        images = [open_image({"path": str(Path(p).expanduser()), "bytes": None}, "RGB", p) for p in batch]
        return {"pixel_values": loaded.processing.images(images)}


class CaptionTransform:
    """`with_transform`: undecoded images -> `pixel_values`; a caption -> `labels` (its tokens and
    eos, at most `max_target_length`)."""

    def __init__(self, processing: Any, max_target_length: int):
        self.processing, self.max_target_length = processing, max_target_length

    def __call__(self, batch: dict[str, list]) -> dict[str, Any]:
        tokenizer = self.processing.tokenizer
        images = [open_image(v, "RGB") for v in batch["image"]]
        ids = tokenizer([str(c) for c in batch["caption"]], add_special_tokens=False)["input_ids"]
        labels = [(row[:self.max_target_length - 1] + [tokenizer.eos_token_id]) for row in ids]
        return {"pixel_values": self.processing.images(images), "labels": labels, "references": batch["references"]}


def collate_captions(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the images; pad labels with -100 past each caption's length (by length, not by token id:
    the eos GPT-2 also pads with is kept) and give the decoder its attention mask."""
    import torch

    width = max(len(r["labels"]) for r in rows)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        labels[i, :len(r["labels"])] = torch.as_tensor(r["labels"])
        mask[i, :len(r["labels"])] = 1
    return {"pixel_values": torch.stack([torch.as_tensor(r["pixel_values"]) for r in rows]), "labels": labels,
            "decoder_attention_mask": mask}


# ------------------------------------------------------------------------------------------ metrics


def coco_tokens(text: str) -> str:
    """A caption as the COCO PTB tokenizer would give it: lowercased, punctuation split off and dropped."""
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower()))


def caption_metrics(predictions: list[str], references: list[list[str]]) -> tuple[dict[str, float], Optional[str]]:
    """BLEU-4 (sacrebleu, 0..100, every reference), ROUGE-L (0..1, best reference), exact match,
    CIDEr-D (pycocoevalcap's scorer; without it, no CIDEr and a hint how to add it)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if not predictions:
        return {}, None
    # every metric on COCO-tokenised text (lowercased, punctuation off), as the COCO caption evaluation does
    predictions = [coco_tokens(p) for p in predictions]
    references = [[coco_tokens(r) for r in refs] for refs in references]
    width = max(len(r) for r in references)
    streams = [[refs[i] if i < len(refs) else refs[0] for refs in references] for i in range(width)]
    out = {"bleu": float(sacrebleu.corpus_bleu(list(predictions), streams).score)}
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    out["rougeL"] = sum(scorer.score_multi(refs, pred)["rougeL"].fmeasure for pred, refs in zip(predictions, references)) / len(predictions)
    out["exact_match"] = sum(p in refs for p, refs in zip(predictions, references)) / len(predictions)
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        return out, CIDER_HINT
    gts = {i: list(refs) for i, refs in enumerate(references)}
    res = {i: [p] for i, p in enumerate(predictions)}
    out["cider"] = float(Cider().compute_score(gts, res)[0])
    return out, None


class Captioning(Objective):
    """Cross-entropy on the caption tokens (and eos); evaluation generates a caption per image and
    scores it against every reference."""

    primary_metric = "rougeL"
    greater_is_better = True
    loss_is_a_mean = True  # VisionEncoderDecoderModel averages its cross-entropy itself

    def check_config(self, cfg: RunConfig) -> list[str]:
        if cfg.method.name == "lora" and cfg.model.from_scratch is not None and not cfg.method.save_merged:
            return ["method.save_merged=false keeps only the LoRA adapter, but a model built from scratch has no saved "
                    "base model to load it onto: keep method.save_merged=true"]
        return []

    def evaluate(self, job: Job, runner: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        metrics = super().evaluate(job, runner, features, split, phase)
        ds = getattr(features, split)
        cap = job.cfg.eval.max_eval_generate_samples
        rows = ds.select(range(min(cap, len(ds)))) if cap else ds
        raw = rows.with_format(None)  # the undecoded images and references, without the transform
        images = [open_image(v, "RGB") for v in raw["image"]]
        references = list(raw["references"])
        loaded = Loaded(model_of(runner), runner.processing_class, "")
        options = {"max_new_tokens": job.cfg.eval.max_new_tokens, "num_beams": job.cfg.eval.num_beams}
        predictions = job.family.caption(loaded, images, options, runner.args.per_device_eval_batch_size)
        scores, hint = caption_metrics(predictions, references)
        if hint and hint not in job.notes:  # said once per run or eval, on stderr, and kept in its notes
            import sys

            print(f"note: {hint}", file=sys.stderr)
            job.notes.append(hint)
        metrics.update({k: round(v, 6) for k, v in scores.items()})
        metrics["gen_len"] = round(sum(len(p.split()) for p in predictions) / max(len(predictions), 1), 3)
        job.samples[phase] = [{"image": img, "prediction": p, "references": r}
                                         for img, p, r in zip(images[:SHEET_SAMPLES], predictions, references)]
        return metrics

    def report(self, job: Job, evaluator: Any, features: Splits) -> dict[str, Any]:
        out = super().report(job, evaluator, features)
        samples = job.samples.get("eval", [])
        out["samples"] = [{"prediction": s["prediction"], "references": s["references"]} for s in samples]
        return out

    def write_artifacts(self, job: Job, run_dir: Path, log_history: list[dict[str, Any]]) -> list[str]:
        from ..rundir import SAMPLE_SHEETS

        written = []
        for phase in ("before", "after"):
            samples = job.samples.get(phase)
            if samples:
                sample_sheet(samples, run_dir / SAMPLE_SHEETS[phase], f"{phase} training")
                written.append(SAMPLE_SHEETS[phase])
        return written

    def eval_artifacts(self, job: Job, result_path: Path) -> list[str]:
        from ..rundir import SAMPLE_SHEET_SUFFIX

        samples = job.samples.get("eval")
        if not samples:
            return []
        png = result_path.with_suffix(SAMPLE_SHEET_SUFFIX)
        sample_sheet(samples, png, "evaluation")
        return [str(png)]

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], max_new_tokens: int = 32, num_beams: int = 1,
                batch_size: int = 16, **_: Any) -> list[dict[str, Any]]:
        """A caption per image file."""
        images = []
        for item in inputs:
            if not Path(item).expanduser().is_file():
                raise DataError(f"image not found: {item} (predict takes paths of image files)")
            images.append(open_image({"path": str(Path(item).expanduser()), "bytes": None}, "RGB", item))
        captions = job.family.caption(loaded, images, {"max_new_tokens": max_new_tokens, "num_beams": num_beams},
                                      batch_size)
        return [{"input": item, "output": caption} for item, caption in zip(inputs, captions)]


def sample_sheet(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    """A PNG grid of images with the predicted caption (bold) and the first reference under each."""
    import textwrap

    from PIL import Image, ImageDraw

    cell, text_h, cols = 160, 64, 4
    rows = (len(samples) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell, rows * (cell + text_h) + 24), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), f"sample captions, {title}: predicted / reference", fill="black")
    for i, s in enumerate(samples):
        x, y = (i % cols) * cell, 24 + (i // cols) * (cell + text_h)
        sheet.paste(s["image"].resize((cell - 16, cell - 16)), (x + 8, y + 8))
        lines = textwrap.wrap("> " + s["prediction"], 26)[:2] + textwrap.wrap("= " + (s["references"] or [""])[0], 26)[:2]
        for j, line in enumerate(lines):
            draw.text((x + 4, y + cell + 2 + j * 14), line, fill="black" if line.startswith(">") else "gray")
    sheet.save(path)


TASK = Task(
    name="image-captioning",
    family=VisionEncoderDecoderFamily(),
    data=CaptionedImages(),
    objective=Captioning(),
    card=CardInfo("image-to-text", "Image To Text"),
)
