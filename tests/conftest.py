"""Fixtures shared across the test suite."""

import pytest


@pytest.fixture(scope="session")
def smollm2_hf():
    """(LlamaForCausalLM, tokenizer) for the offline model, from the user's normal cache."""
    from anee_lite.loading import load_pretrained

    return load_pretrained("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_gpt2_folder(tmp_path_factory):
    """A folder holding a tiny random GPT2LMHeadModel and a small byte-level BPE tokenizer."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["The quick brown fox jumps over the lazy dog.", "Early exits save compute."] * 10,
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
