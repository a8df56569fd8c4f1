"""Actor-critic: DIAMOND's size, a fresh agent's behaviour, lambda-returns by hand, the loss."""

from __future__ import annotations

import pytest
import torch

from wmcli.base.config import ActorCriticConfig
from wmcli.models.actor_critic import ActorCritic, actor_critic_loss, lambda_returns


def test_diamond_sized_agent():
    m = ActorCritic(ActorCriticConfig(), num_actions=4, frame_size=64)
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(3.23e6, rel=0.01)
    logits, value, (h, c) = m(torch.randn(5, 3, 64, 64), m.initial_state(5))
    assert logits.shape == (5, 4) and value.shape == (5,) and h.shape == (5, 512)
    # Zero-initialised heads: a fresh agent is uniform and values everything at 0.
    assert torch.equal(logits, torch.zeros(5, 4)) and torch.equal(value, torch.zeros(5))


def test_lambda_returns_by_hand():
    gamma, lam = 0.9, 0.5
    rew = torch.tensor([[1.0, 0.0, 2.0]])
    end = torch.tensor([[False, False, False]])
    v = torch.tensor([[0.5, 1.0, 2.0, 4.0]])  # V_0..V_3; V_3 bootstraps the truncation
    # G_2 = 2 + 0.9 * (0.5 * 4 + 0.5 * 4) = 5.6
    # G_1 = 0 + 0.9 * (0.5 * 2 + 0.5 * 5.6) = 3.42
    # G_0 = 1 + 0.9 * (0.5 * 1 + 0.5 * 3.42) = 2.989
    torch.testing.assert_close(lambda_returns(rew, end, v, gamma, lam), torch.tensor([[2.989, 3.42, 5.6]]))
    # An end at step 1 cuts everything after it: G_1 = r_1 = 0, G_0 = 1 + 0.9 * (0.5 * 1 + 0.5 * 0).
    end = torch.tensor([[False, True, False]])
    torch.testing.assert_close(lambda_returns(rew, end, v, gamma, lam)[0, :2], torch.tensor([1.45, 0.0]))
    # lambda = 1, gamma = 1, no ends: the plain sum of rewards plus the bootstrap.
    torch.testing.assert_close(lambda_returns(rew, torch.zeros_like(end), v, 1.0, 1.0), torch.tensor([[7.0, 6.0, 6.0]]))


def test_loss_pushes_toward_rewarded_actions():
    torch.manual_seed(0)
    cfg = ActorCriticConfig(channels=(8, 8, 8, 8), lstm_dim=16)
    m = ActorCritic(cfg, num_actions=3, frame_size=16)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    obs = torch.randn(8, 3, 16, 16)
    for _ in range(100):
        logits, value, _ = m(obs, m.initial_state(8))
        act = torch.distributions.Categorical(logits=logits).sample()
        rew = (act == 2).float() * 5.0  # sign-clipped to 1 inside the loss
        loss, parts = actor_critic_loss(logits[:, None], torch.stack([value, torch.zeros(8)], 1), act[:, None],
                                        rew[:, None], torch.ones(8, 1, dtype=torch.bool), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    probs = torch.softmax(m(obs, m.initial_state(8))[0], -1)
    assert probs[:, 2].mean() > 0.9
    assert parts["charts/return"].item() <= 1.0  # returns use sign-clipped rewards
