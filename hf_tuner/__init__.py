"""hf-tuner: fine-tune Hugging Face models from recipes (full, LoRA), evaluate, push."""
__version__ = "0.1.0"
