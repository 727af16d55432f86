"""A randomly initialised two-layer Llama: the model tests' stand-in for a real one."""
from pathlib import Path

import torch
import transformers


def save_tiny_llama(tokenizer, out: Path) -> Path:
    """Save a tiny Llama (seeded, so the same weights every time) with this tokenizer to `out`."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    transformers.LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
