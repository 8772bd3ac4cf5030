"""What several tasks share, by kind. A task module (`hf_tuner.tasks.<task>`) is composed of these and the
part kinds of `hf_tuner.tasks.base`; it never imports another task module (tests/test_structure.py).

- `families`: model families as values with settings (text heads, causal LMs) and their scoring helpers
- `images`: image columns, decoding, the ViT image processor, augmentation, batching
- `loops`, `decoding`: THE generation loop, THE scoring loop, the sampling loop and its cheap GPT-2 step
- `language`: prompt completion for `predict`, the Trainer that reports perplexity
- `sampling`: length-grouped training batches for any Trainer
- `classification`: the classification objective (text and images)
- `preference`: preference-pair data (reward models, DPO)
- `rewards`: the rewards a policy is optimised against (GRPO, RLOO)
"""
