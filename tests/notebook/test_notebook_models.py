"""What the notebooks call, on models other than smollm2-135m: a tiny random GPT-2 and an untied Llama.

The notebooks only ever run on one model in the test suite; these cover the library calls they make
on the other architecture shapes checkers may use (short context, few layers, untied unembedding,
one key/value head, head_dim != d_model / n_heads). Whole notebooks are not executed here.
"""

import matplotlib
import pytest
import torch

from anee_lite import ANEEConfig, ANEEWrapper
from anee_lite.adaptive import quality_vs_budget
from anee_lite.adaptive.evaluate import evaluate
from anee_lite.io import eval_ids
from anee_lite.notebook.early_exit_budget import budget_view
from anee_lite.notebook.logit_lens import lens_view

matplotlib.use("Agg")

PROMPT = "The quick brown fox"


@pytest.fixture(scope="session")
def tiny_llama_untied_folder(tiny_gpt2_folder, tmp_path_factory):
    """An untied Llama with one key/value head and head_dim 12 != 32 / 4, sharing the GPT-2's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama-untied")
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=1, head_dim=12, max_position_embeddings=48,
                         tie_word_embeddings=False, bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["gpt2", "llama-untied"])
def wrapped(request, tiny_gpt2_folder, tiny_llama_untied_folder):
    folder = tiny_gpt2_folder if request.param == "gpt2" else tiny_llama_untied_folder
    return ANEEWrapper(ANEEConfig(model_name=str(folder)))


def test_unrolled_logits_match_huggingface(wrapped):
    ids = torch.tensor([wrapped.tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        expected = wrapped.hf_model(ids).logits
    assert (wrapped.model.forward(ids).logits - expected).abs().max() <= 1e-4


def test_quality_and_views_on_a_text_cut_to_the_context(wrapped):
    from anee_lite.notebook import early_exit_budget, logit_lens

    n_ctx = wrapped.model.dims.n_ctx
    assert n_ctx < 300  # notebook 03 cuts its 300-token text to the context window like this
    ids = eval_ids(wrapped.tokenizer, "python_docs_heldout", n_tokens=min(300, n_ctx))
    rows = quality_vs_budget(wrapped, ids, [0.0, 0.5, 1.0])
    assert [r["n_layers"] for r in rows] == [wrapped.n_layers] * 3
    assert all(torch.isfinite(torch.tensor(r["perplexity"])) for r in rows)
    view = lens_view(wrapped, PROMPT)
    assert view["lens"].top_tokens.shape[0] == wrapped.n_layers + 1
    assert budget_view(wrapped, PROMPT, 0.5, 1, 0.1, max_new_tokens=3)["n_layers"] == wrapped.n_layers
    early_exit_budget.plot_quality_vs_budget(rows)
    logit_lens.plot_lens_heatmap(view["lens"], view["tokens"], view["top_text"])
    early_exit_budget.plot_budget_layers(wrapped.n_layers, [0.0, 0.5, 1.0])
    import matplotlib.pyplot as plt

    plt.close("all")


def test_evaluate_uses_the_logit_lens_and_refuses_the_smollm2_probe(wrapped):
    text = "In the beginning God created the heaven and the earth. " * 4
    result = evaluate(wrapped.model, wrapped.tokenizer, text, "confidence", model_name=wrapped.config.model_name,
                      max_tokens=40, chunk=20)
    assert result.lens == "logit"
    with pytest.raises(ValueError, match="smollm2-135m"):
        evaluate(wrapped.model, wrapped.tokenizer, text, "learned", model_name=wrapped.config.model_name,
                 max_tokens=40, chunk=20)
