"""The forward's matrix product: split-K for a few rows on the CPU, F.linear otherwise; both equal x @ W + b."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from anee_lite.core.architectures.base import linear


@pytest.fixture
def threads():
    """Set torch's thread count for one test, then put it back."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@settings(max_examples=40, deadline=None)
@given(d_in=st.integers(1, 70), d_out=st.integers(1, 40), rows=st.sampled_from([(1,), (1, 1), (1, 1, 1), (2, 3), (1, 4), (1, 32), (33,), (0, 5)]),
       bias=st.booleans(), n_threads=st.integers(1, 4), sliced=st.booleans())
def test_linear_is_x_times_w_plus_b_for_any_shape_and_thread_count(d_in, d_out, rows, bias, n_threads, sliced):
    gen = torch.Generator().manual_seed(d_in * 100 + d_out)
    full = torch.randn(d_in, d_out + 3, generator=gen)
    w = full[:, 1:1 + d_out] if sliced else full[:, :d_out].contiguous()  # a column block, as project_columns passes
    b = torch.randn(d_out, generator=gen) if bias else None
    x = torch.randn(*rows, d_in, generator=gen)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(n_threads)
        got = linear(x, w, b)
    finally:
        torch.set_num_threads(before)
    want = x.double() @ w.double() + (0 if b is None else b.double())
    assert got.shape == (*rows, d_out) and got.dtype == x.dtype
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_one_row_is_split_into_one_block_of_rows_per_thread(threads):
    """The split path really runs (a bmm over one block per thread) and agrees with F.linear."""
    from torch.profiler import ProfilerActivity, profile

    threads(2)
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 1, 64, generator=gen), torch.randn(64, 48, generator=gen)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got = linear(x, w)
    bmm = [e for e in prof.events() if e.name == "aten::bmm"]
    assert len(bmm) == 1
    torch.testing.assert_close(got, F.linear(x, w.t()), rtol=1e-5, atol=1e-5)  # another summation order
    x_odd, w_odd = torch.randn(1, 1, 65, generator=gen), torch.randn(65, 48, generator=gen)  # a pruned, odd width
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got = linear(x_odd, w_odd)
    assert len([e for e in prof.events() if e.name == "aten::bmm"]) == 1  # split too, the last row added after
    torch.testing.assert_close(got, F.linear(x_odd, w_odd.t()), rtol=1e-5, atol=1e-5)
    threads(1)  # one thread: nothing to split
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        linear(x, w)
    assert not [e for e in prof.events() if e.name == "aten::bmm"]


def test_a_few_rows_are_split_too_and_many_rows_are_not(threads):
    """A decoding step with tokens catching up beside it (2-32 rows) is split; a prefill is the BLAS's."""
    from torch.profiler import ProfilerActivity, profile

    from anee_lite.core.architectures.base import SPLIT_K_MAX_ROWS

    threads(2)
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(1))
    for n_rows, split in ((3, True), (SPLIT_K_MAX_ROWS, True), (SPLIT_K_MAX_ROWS + 1, False)):
        x = torch.randn(1, n_rows, 64, generator=torch.Generator().manual_seed(n_rows))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            got = linear(x, w)
        assert bool([e for e in prof.events() if e.name == "aten::bmm"]) == split
        torch.testing.assert_close(got, F.linear(x, w.t()), rtol=1e-5, atol=1e-5)
        one_by_one = torch.cat([linear(x[:, i:i + 1], w) for i in range(n_rows)], dim=1)  # each row alone
        torch.testing.assert_close(got, one_by_one, rtol=1e-5, atol=1e-5)


def test_half_precision_keeps_the_plain_product(threads):
    threads(2)
    w = torch.randn(64, 32)
    for x in (torch.randn(1, 1, 64, dtype=torch.bfloat16), torch.randn(3, 64, dtype=torch.bfloat16)):
        assert torch.equal(linear(x, w.bfloat16()), F.linear(x, w.bfloat16().t()))  # no partial sums rounded twice
