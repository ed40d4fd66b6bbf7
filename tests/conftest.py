"""Fixtures and small random models shared across the test suite (``from conftest import ...``)."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from anee_lite.core.architectures import ModelDims

VOCAB = 97
SMOLLM2_DIMS = ModelDims(architecture="llama", d_model=576, n_heads=9, n_kv_heads=3, d_head=64, d_mlp=1536,
                         n_layers=30, d_vocab=49152, n_ctx=8192)  # smollm2-135m's sizes, for tests that need no weights


class CharTokenizer:
    """One token per character, ids ``2 + ord(ch) % modulus``: enough of a tokenizer for text_chunks and evaluate."""

    def __init__(self, modulus: int = VOCAB - 2):
        self.modulus = modulus

    def __call__(self, text, return_tensors=None):
        from types import SimpleNamespace

        return SimpleNamespace(input_ids=torch.tensor([[2 + ord(ch) % self.modulus for ch in text]]))


def random_gpt2(n_layer=3, n_embd=64, n_head=4, n_positions=64, seed=0):
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions, vocab_size=VOCAB,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def random_ids(batch=2, tokens=7, seed=0):
    """[batch, tokens] token ids of the small random models' vocabulary, reproducible."""
    return torch.randint(0, VOCAB, (batch, tokens), generator=torch.Generator().manual_seed(seed))


def hf_blocks(hf):
    """The decoder blocks of a HuggingFace GPT-2 or Llama-family model (for weight surgery and HF hooks)."""
    return hf.transformer.h if hf.config.model_type == "gpt2" else hf.model.layers


def random_llama(n_layers=3, d_model=64, n_heads=4, n_kv_heads=2, seed=0, **extra):
    torch.manual_seed(seed)
    cfg = LlamaConfig(num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=n_heads,
                      num_key_value_heads=n_kv_heads, intermediate_size=2 * d_model + 8, vocab_size=VOCAB,
                      max_position_embeddings=128, bos_token_id=0, eos_token_id=1, pad_token_id=1, **extra)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # random init leaves norms at 1 and biases at 0: perturb them so they matter
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model



@pytest.fixture(scope="module")
def llama4_hf():
    """A 4-layer random Llama for argument-checking tests."""
    return random_llama(n_layers=4)


@pytest.fixture(scope="module")
def llama4(llama4_hf):
    """``llama4_hf`` unrolled."""
    from anee_lite import UnrolledModel

    return UnrolledModel(llama4_hf)


@pytest.fixture(scope="session")
def smollm2_hf():
    """(LlamaForCausalLM, tokenizer) for the offline model, from the user's normal cache."""
    from anee_lite.io.loading import load_pretrained

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
