"""The quality metrics refuse inputs they would silently misread (broadcast rows, misaligned ids, odd masks)."""

import math
import re

import pytest
import torch

from anee_lite.core.metrics import mean_kl, next_token_nll, perplexity, top1_agreement

LOGITS = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))  # [B, T, V]
OTHER = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(1))
IDS = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("metric", [top1_agreement, mean_kl])
@pytest.mark.parametrize("reference", [OTHER[0], OTHER[:1], torch.randn(2, 5, 13)], ids=["[T,V]", "[1,T,V]", "vocab"])
def test_pair_metrics_refuse_other_shapes(metric, reference):
    # [B, T, V] against [T, V] was broadcast (row 0 compared with every row); another vocabulary compared ids
    with pytest.raises(ValueError, match="reference_logits must have the same shape"):
        metric(LOGITS, reference)


@pytest.mark.parametrize("mask, message", [
    (torch.ones(2, 4), "mask must have shape \\[2, 5\\]"),
    (torch.full((2, 5), 2), "only 0 .* and 1"),
    (torch.full((2, 5), 0.5), "only 0 .* and 1"),
    (torch.zeros(2, 5), "no position"),
])
def test_pair_metrics_check_the_mask(mask, message):
    # a mask of 2s or 0.5s counted every position; an all-zero one returned nan
    with pytest.raises(ValueError, match=message):
        top1_agreement(LOGITS, OTHER, mask)


def test_pair_metrics_still_take_flat_logits_and_masks():
    flat = top1_agreement(LOGITS.reshape(10, 11), OTHER.reshape(10, 11))  # evaluate passes [N, V]
    assert flat == top1_agreement(LOGITS, OTHER)
    keep = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 1]])
    same = (LOGITS.argmax(-1) == OTHER.argmax(-1))[keep.bool()].float().mean()
    assert top1_agreement(LOGITS, OTHER, keep) == pytest.approx(float(same))
    assert top1_agreement(LOGITS, OTHER, keep.bool()) == top1_agreement(LOGITS, OTHER, keep.float())


@pytest.mark.parametrize("ids, message", [
    (IDS[:, :4], "input_ids must have shape \\[B, T\\] = \\[2, 5\\]"),  # was scored against shifted logits
    (IDS[:1], "input_ids must have shape"),  # was row 0 only
    (IDS + 11, re.escape("input_ids must be token ids in [0, 10]")),
    (IDS.float(), "input_ids must be a tensor of integer"),
])
def test_perplexity_refuses_misaligned_ids(ids, message):
    with pytest.raises((ValueError, TypeError), match=message):
        perplexity(LOGITS, ids)


def test_perplexity_needs_a_pair_of_tokens():
    with pytest.raises(ValueError, match="at least 2 tokens"):  # was nan
        perplexity(LOGITS[:, :1], IDS[:, :1])
    with pytest.raises(ValueError, match="no pair"):
        perplexity(LOGITS, IDS, torch.tensor([[1, 0, 1, 0, 1], [0, 1, 0, 1, 0]]))
    assert next_token_nll(LOGITS[:, :1], IDS[:, :1]).shape == (2, 0)  # a one-token chunk still scores nothing


def test_perplexity_with_a_mask_is_unchanged():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    nll = next_token_nll(LOGITS, IDS)
    pairs = (mask[:, 1:] * mask[:, :-1]).bool()
    assert perplexity(LOGITS, IDS, mask) == pytest.approx(math.exp(float(nll[pairs].mean())))
