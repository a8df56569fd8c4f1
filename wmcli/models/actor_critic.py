"""The agent: DIAMOND's actor-critic network, lambda-returns, and its loss.

The network sees the current frame only and carries memory in an LSTM cell: a 3x3 conv, four
pre-activation residual blocks each followed by a 2x2 max-pool (64 -> 4), an LSTMCell, and
zero-initialised policy and value heads (a fresh agent is uniform and values everything at 0),
DIAMOND's LSTM initialisation (forget-gate bias 1). DIAMOND's trained weights load unchanged.
The loss is REINFORCE with a value baseline on lambda-returns, a value regression and an
entropy bonus, with rewards sign-clipped (DIAMOND, Appendix; Hafner et al. for lambda-returns).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wmcli.base.config import ActorCriticConfig
from wmcli.models.nets import init_lstm


class _ResBlock(nn.Module):
    """Small pre-activation residual block: x + conv(SiLU(GN(x))), as DIAMOND's actor-critic."""

    def __init__(self, in_c: int, out_c: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(max(1, in_c // 32), in_c), nn.SiLU(), nn.Conv2d(in_c, out_c, 3, padding=1)
        )
        self.skip = nn.Conv2d(in_c, out_c, 1) if in_c != out_c else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.net(x)


class ActorCritic(nn.Module):
    def __init__(self, cfg: ActorCriticConfig, num_actions: int, frame_size: int, img_channels: int = 3):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = [nn.Conv2d(img_channels, cfg.channels[0], 3, padding=1)]
        c = cfg.channels[0]
        for out_c in cfg.channels:
            layers += [_ResBlock(c, out_c), nn.MaxPool2d(2)]
            c = out_c
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        side = frame_size // 2 ** len(cfg.channels)
        self.lstm = nn.LSTMCell(c * side * side, cfg.lstm_dim)
        self.policy = nn.Linear(cfg.lstm_dim, num_actions)
        self.value = nn.Linear(cfg.lstm_dim, 1)
        for head in (self.policy, self.value):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        init_lstm(self.lstm)

    def initial_state(self, batch_size: int, device=None) -> tuple[Tensor, Tensor]:
        h = torch.zeros(batch_size, self.cfg.lstm_dim, device=device)
        return h, h.clone()

    def forward(self, obs: Tensor, state: tuple[Tensor, Tensor]):
        """obs (B, 3, H, W) in [-1, 1] -> policy logits (B, A), value (B,), next LSTM state."""
        h, c = self.lstm(self.encoder(obs), state)
        return self.policy(h), self.value(h).squeeze(-1), (h, c)


def lambda_returns(rew: Tensor, end: Tensor, values: Tensor, gamma: float, lambda_: float) -> Tensor:
    """Lambda-returns of a (B, T) trajectory: G_t = r_t + gamma (1 - end_t) ((1 - lambda) V_{t+1}
    + lambda G_{t+1}), bootstrapped with G_T = V_T. values (B, T + 1) holds V_0 .. V_T, where V_T
    is the value of the state the trajectory was truncated in."""
    T = rew.shape[1]
    returns = torch.empty_like(rew)
    g = values[:, T]
    for t in reversed(range(T)):
        g = rew[:, t] + gamma * (1 - end[:, t].float()) * ((1 - lambda_) * values[:, t + 1] + lambda_ * g)
        returns[:, t] = g
    return returns


def actor_critic_loss(logits: Tensor, values: Tensor, act: Tensor, rew: Tensor, end: Tensor,
                      cfg: ActorCriticConfig, mask: Tensor | None = None) -> tuple[Tensor, dict]:
    """logits (B, T, A), values (B, T + 1), act (B, T), rew (B, T) raw, end (B, T) bool, and
    mask (B, T) bool marking the steps that count (default all; steps after an end do not).

    REINFORCE with the value as baseline: -log pi(a_t) (G_t - V_t) with the advantage detached,
    + value_weight (V_t - G_t)^2 with G detached, - entropy_weight H(pi); rewards sign-clipped.
    """
    with torch.no_grad():
        returns = lambda_returns(rew.sign(), end, values, cfg.gamma, cfg.lambda_)  # (B, T)
    w = torch.ones_like(rew) if mask is None else mask.float()
    n = w.sum().clamp(min=1)
    dist = torch.distributions.Categorical(logits=logits.float())
    advantage = (returns - values[:, :-1]).detach()
    loss_actor = -(dist.log_prob(act) * advantage * w).sum() / n
    loss_value = ((values[:, :-1] - returns).pow(2) * w).sum() / n
    entropy = (dist.entropy() * w).sum() / n
    loss = loss_actor + cfg.value_weight * loss_value - cfg.entropy_weight * entropy
    return loss, {"losses/actor": loss_actor.detach(), "losses/value": loss_value.detach(),
                  "charts/entropy": entropy.detach(), "charts/return": ((returns * w).sum() / n)}
