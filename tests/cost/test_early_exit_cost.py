"""Every charge of an early-exited token, by hand, on a tiny Llama: deleting any one of them fails here."""

import pytest
import torch
from conftest import random_llama

from anee_lite import UnrolledModel
from anee_lite.adaptive import make_controller
from anee_lite.cost import early_exit_cost, propagated_per_token, token_cost
from anee_lite.lens import LogitLens, TunedLens

# d_model 8, 2 heads of 4 (q width 8), 1 K/V head (kv width 4), d_mlp 24, vocab 97, 3 layers
QKV_O = 8 * (8 + 2 * 4) + 8 * 8  # 192
MLP = 3 * 8 * 24  # 576 (SwiGLU: gate, up, down)
NORM = 2 * 8  # 16, by the documented convention
LENS = NORM + 8 * 97  # 792: final norm + unembedding
TRANSLATOR = 8 * 8  # 64
KV_ENTRY = NORM + 8 * 2 * 4  # 80: the layer's input norm, then K and V


def layers(n, context_len):
    return n * (QKV_O + MLP + 2 * NORM + 2 * 8 * context_len)  # + q @ k.T and pattern @ v over the keys


@pytest.fixture(scope="module")
def tiny():
    return UnrolledModel(random_llama(n_layers=3, d_model=8, n_heads=2, n_kv_heads=1))


def test_confidence_with_tuned_lens_by_hand(tiny):
    d = tiny.dims.d_model
    lens = TunedLens(tiny, {1: torch.zeros(d, d)}, {1: torch.zeros(d)})  # a translator at layer 1 only
    c = make_controller("confidence", lens, 0.5, exit_layers_allowed=[1, 2])
    # token 0 stops at its layer-1 check; token 1, decoded next, runs all 3 layers (checked at 1 and 2)
    spent, full = early_exit_cost(tiny.dims, torch.tensor([1, 3]), torch.tensor([0, 1]), torch.tensor([0, 0]),
                                  c.charges)
    token0 = layers(1, 1) + (LENS + TRANSLATOR) + 2 * KV_ENTRY  # its check's logits are its output: no unembedding
    token1 = layers(3, 2) + 2 * LENS + TRANSLATOR + LENS  # two checks, one translator, then its own unembedding
    assert spent.kv_propagation == 2 * KV_ENTRY  # token 0 owes K/V at layers 2 and 3 to token 1
    assert spent.exit_checks == 3 * LENS + 2 * TRANSLATOR
    assert spent.lm_head == 8 * 97  # one unembedding outside the checks (token 1's)
    assert spent.macs == token0 + token1 == 1832 + 4936
    assert full.macs == (layers(3, 1) + LENS) + (layers(3, 2) + LENS)


def test_learned_probe_and_readout_translator_by_hand(tiny):
    from anee_lite.adaptive.probe import ExitProbe

    d = tiny.dims.d_model
    lens = TunedLens(tiny, {2: torch.zeros(d, d)}, {2: torch.zeros(d)})
    probe = ExitProbe({2: torch.zeros(d + 1)}, {2: torch.tensor(0.0)}, lens_kind="tuned")
    c = make_controller("learned", lens, 0.5, probe=probe)
    assert c.probe_macs_per_check == 4 * 8 + 9  # RMS norm and cosine reductions, then the 9-long dot product
    spent, _ = early_exit_cost(tiny.dims, torch.tensor([2]), torch.tensor([0]), torch.tensor([0]), c.charges)
    # one probe evaluation, then the readout: translator at layer 2, final norm and unembedding
    assert spent.exit_checks == 41 + TRANSLATOR
    assert spent.macs == layers(2, 1) + 41 + TRANSLATOR + LENS


def test_a_token_that_runs_to_the_end_is_unembedded_once_more(tiny):
    c = make_controller("entropy", LogitLens(tiny), 0.1, exit_layers_allowed=[2])
    ran_on = token_cost(tiny.dims, layers_run=3, context_len=1, **c.charges(3))
    stopped = token_cost(tiny.dims, layers_run=2, context_len=1, **c.charges(2))
    assert ran_on.exit_checks == stopped.exit_checks == LENS  # one check, at layer 2
    assert ran_on.lm_head == 8 * 97 and stopped.lm_head == 0  # the stopped token's check was its readout


def test_propagation_owed_to_later_tokens_by_hand():
    owed = propagated_per_token(torch.tensor([12, 30, 18, 18, 9, 4]), torch.tensor([0, 0, 0, 0, 0, 1]))
    assert owed.tolist() == [18, 0, 0, 0, 0, 0]  # only later tokens of the same chunk collect


def test_generation_report_charges_a_controllers_checks(tiny):
    from anee_lite import greedy_generate
    from anee_lite.cost import generation_report

    # saturation cannot stop at its first check (no previous residual), then stops at the second
    c = make_controller("saturation", LogitLens(tiny), -2.0, exit_layers_allowed=[1, 2], sink_tokens=0)
    result = greedy_generate(tiny, torch.tensor([[3, 4, 5]]), max_new_tokens=2, controller=c)
    rows = generation_report(result, tiny.dims, exit_charges=c.charges)
    plain = generation_report(result, tiny.dims)
    for r, p in zip(rows, plain):
        assert r["layers"] == 2
        assert r["flops"] == 2 * (layers(2, r["context_len"]) + LENS + 2 * 3 * 8)  # two checks of 3 reductions
        assert r["flops"] - p["flops"] == 2 * 2 * 3 * 8


# --- bad input -----------------------------------------------------------------------------------------

def test_per_token_tensors_must_line_up(tiny):
    exits, positions, chunks = torch.tensor([1, 2, 3]), torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0])
    spent, _ = early_exit_cost(tiny.dims, exits, positions, chunks, lambda L: {})
    # zip dropped the third token (positions one short) or the extra checks past the first
    with pytest.raises(ValueError, match="one entry per token"):
        early_exit_cost(tiny.dims, exits, positions[:2], chunks, lambda L: {})
    with pytest.raises(ValueError, match="one entry per token"):
        early_exit_cost(tiny.dims, exits, positions, chunks, lambda L: {}, extra_lens_checks=torch.tensor([1]))
    with pytest.raises(ValueError, match="one entry per token"):  # was a raw IndexError from a boolean mask
        propagated_per_token(exits, chunks[:2])
    with pytest.raises(TypeError, match="exit_layers must be a 1-d tensor of integers"):
        early_exit_cost(tiny.dims, exits.float(), positions, chunks, lambda L: {})
    with pytest.raises(TypeError, match="exit_charges must be a function"):
        early_exit_cost(tiny.dims, exits, positions, chunks, None)
    assert spent.flops > 0


def test_generation_report_names_wrong_arguments(tiny):
    from anee_lite import greedy_generate
    from anee_lite.cost import generation_report

    run = greedy_generate(tiny, torch.tensor([[5, 6, 7]]), max_new_tokens=2)
    assert len(generation_report(run, tiny.dims)) == 2
    for args, match in (((run.sequences, tiny.dims), "result must be the GenerationResult"),
                        ((run, tiny), "dims must be the model's ModelDims"),
                        ((run, tiny.dims, 3), "exit_charges must be None or a function")):
        with pytest.raises(TypeError, match=match):  # were AttributeErrors
            generation_report(*args)


def test_catch_up_charges_the_skipped_layers_in_full_by_hand(tiny):
    """The same two tokens as above under kv_fill="catch_up": token 0 runs layers 2 and 3 later, beside token 1."""
    d = tiny.dims.d_model
    lens = TunedLens(tiny, {1: torch.zeros(d, d)}, {1: torch.zeros(d)})
    c = make_controller("confidence", lens, 0.5, exit_layers_allowed=[1, 2])
    args = (tiny.dims, torch.tensor([1, 3]), torch.tensor([0, 1]), torch.tensor([0, 0]), c.charges)
    spent, full = early_exit_cost(*args, kv_fill="catch_up")
    propagated, _ = early_exit_cost(*args)
    assert spent.kv_propagation == 0
    token0 = layers(3, 1) + (LENS + TRANSLATOR)  # all three layers' arithmetic, at its own context of 1 key
    token1 = layers(3, 2) + 2 * LENS + TRANSLATOR + LENS
    assert spent.macs == token0 + token1
    assert spent.macs > full.macs  # the checks come on top: catch-up saves no arithmetic
    # bytes: the caught-up layers read token 0's K and V (1 key, width 4, two layers), never the weights again;
    # propagation instead read its residual (8) and wrote K and V (2 x 4) per entry
    assert spent.bytes_moved - propagated.bytes_moved == 4 * (2 * (2 * 4 * 1) - 2 * (8 + 2 * 4))
    with pytest.raises(ValueError, match="kv_fill must be one of"):
        early_exit_cost(*args, kv_fill="lazy")


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), True, "2"])
def test_layers_caught_up_must_be_a_finite_number_at_least_0(tiny, bad):
    with pytest.raises(ValueError, match="layers_caught_up must be a finite number >= 0"):
        token_cost(tiny.dims, layers_run=1, context_len=1, layers_caught_up=bad)
