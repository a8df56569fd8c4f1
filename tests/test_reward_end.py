"""The reward/termination model: DIAMOND's size, shapes, burn-in state, loss and F1."""

from __future__ import annotations

import pytest
import torch

from wmcli.base.config import RewEndConfig
from wmcli.models.reward_end import RewEndModel, precision_recall_f1

TINY = RewEndConfig(channels=(8, 8), depths=(1, 1), cond_channels=8, lstm_dim=16, attn_head_dim=4)


def test_diamond_sized_model_has_about_diamonds_parameter_count():
    m = RewEndModel(RewEndConfig(), num_actions=4, frame_size=64)
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(5.90e6, rel=0.005)


def test_shapes_and_stepwise_state_equals_one_pass():
    torch.manual_seed(0)
    m = RewEndModel(TINY, num_actions=3, frame_size=16).eval()
    obs, nxt = torch.randn(2, 5, 3, 16, 16), torch.randn(2, 5, 3, 16, 16)
    act = torch.randint(0, 3, (2, 5))
    r, e, _ = m(obs, act, nxt)
    assert r.shape == (2, 5, 3) and e.shape == (2, 5, 2)
    # Burn in on 4 steps, then 1 more step: same as all 5 at once.
    _, _, h = m(obs[:, :4], act[:, :4], nxt[:, :4])
    r5, e5, _ = m(obs[:, 4:], act[:, 4:], nxt[:, 4:], h)
    torch.testing.assert_close(r5[:, 0], r[:, 4], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(e5[:, 0], e[:, 4], atol=1e-5, rtol=1e-4)


def test_one_step_goes_through_the_lstm_cell_with_the_same_result():
    """T = 1 on CPU takes torch's LSTM cell (faster than oneDNN's LSTM at small batches): from a
    fresh state, after a burn-in, and after a bf16 burn-in under autocast."""
    torch.manual_seed(0)
    m = RewEndModel(TINY, num_actions=3, frame_size=16).eval()
    obs, nxt = torch.randn(2, 3, 3, 16, 16), torch.randn(2, 3, 3, 16, 16)
    act = torch.randint(0, 3, (2, 3))
    r, e, (h, c) = m(obs, act, nxt)  # nn.LSTM over 3 steps
    r1, e1, (h1, c1) = m(obs[:, :1], act[:, :1], nxt[:, :1])  # the cell, from a fresh state
    torch.testing.assert_close(r1[:, 0], r[:, 0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(e1[:, 0], e[:, 0], atol=1e-5, rtol=1e-4)
    assert h1.shape == h.shape and c1.shape == c.shape
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, _, state = m(obs[:, :2], act[:, :2], nxt[:, :2])  # a bf16 state from nn.LSTM
        r3, _, (h3, _) = m(obs[:, 2:], act[:, 2:], nxt[:, 2:], state)
    assert h3.dtype == torch.float32 and torch.isfinite(r3).all()
    torch.testing.assert_close(r3[:, 0].float(), r[:, 2], atol=0.1, rtol=0.1)  # bf16's precision


def test_loss_counts_only_real_steps_and_learns():
    torch.manual_seed(0)
    m = RewEndModel(TINY, num_actions=3, frame_size=16)
    obs, nxt = torch.randn(4, 3, 3, 16, 16), torch.randn(4, 3, 3, 16, 16)
    act = torch.randint(0, 3, (4, 3))
    rew = torch.tensor([[0.0, 5.0, -2.0]] * 4)
    end = torch.tensor([[False, False, True]] * 4)
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[:, 2] = False
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first, _ = m.loss(obs, act, nxt, rew, end, mask)
    for _ in range(60):
        loss, parts = m.loss(obs, act, nxt, rew, end, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first.item()
    # The masked step's labels (reward -2, end) play no part: changing them changes nothing.
    a, _ = m.loss(obs, act, nxt, rew, end, mask)
    end2 = end.clone()
    end2[:, 2] = ~end2[:, 2]
    b, _ = m.loss(obs, act, nxt, rew * torch.tensor([1.0, 1.0, -7.0]), end2, mask)
    assert a.item() == b.item()


def test_precision_recall_f1_hand_case():
    pred = torch.tensor([True, True, False, False, True])
    target = torch.tensor([True, False, True, False, True])
    s = precision_recall_f1(pred, target)  # tp 2, fp 1, fn 1
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3) and s["support"] == 3
    assert precision_recall_f1(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool))["f1"] == 0.0
