"""The reward/termination model: what followed an action, read off the frames before and after it.

After DIAMOND: frames t and t+1 (6 channels) go through a conv encoder whose residual blocks
take the action through adaptive group norm; an LSTM over time then predicts the reward's sign
(3 classes: -1, 0, +1) and the end (2 classes). Layout, initialisation and outputs are DIAMOND's
(its `src/models/rew_end_model.py`; DIAMOND's trained weights load unchanged). In imagination its LSTM is first burned in on
the real context frames, then reward and end are sampled from its outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmcli.base.config import RewEndConfig
from wmcli.models.nets import ResBlock, downsample, init_lstm


class RewEndModel(nn.Module):
    def __init__(self, cfg: RewEndConfig, num_actions: int, frame_size: int, img_channels: int = 3):
        super().__init__()
        self.cfg = cfg
        ch, cc = cfg.channels, cfg.cond_channels
        self.act_emb = nn.Embedding(num_actions, cc)
        self.conv_in = nn.Conv2d(2 * img_channels, ch[0], 3, padding=1)
        blocks, c = [], ch[0]
        for i, (out_c, depth) in enumerate(zip(ch, cfg.depths)):
            for _ in range(depth):
                blocks.append(ResBlock(c, out_c, cc, False, cfg.attn_head_dim))
                c = out_c
            if i < len(ch) - 1:
                blocks.append(downsample(c))
        blocks += [ResBlock(c, c, cc, True, cfg.attn_head_dim) for _ in range(2)]
        self.encoder = nn.ModuleList(blocks)
        side = frame_size // 2 ** (len(ch) - 1)
        self.lstm = nn.LSTM(c * side * side, cfg.lstm_dim, batch_first=True)
        self.head = nn.Sequential(nn.Linear(cfg.lstm_dim, cfg.lstm_dim), nn.SiLU(),
                                  nn.Linear(cfg.lstm_dim, 3 + 2, bias=False))  # DIAMOND: no bias on the logits
        init_lstm(self.lstm)

    def forward(self, obs: Tensor, act: Tensor, next_obs: Tensor, hidden=None):
        """obs, next_obs (B, T, 3, H, W) in [-1, 1]; act (B, T) -> reward logits (B, T, 3),
        end logits (B, T, 2), and the LSTM state to continue from."""
        B, T, C, H, W = obs.shape
        x = torch.cat([obs, next_obs], dim=2).flatten(0, 1)  # (B*T, 2C, H, W)
        cond = self.act_emb(act).flatten(0, 1)  # (B*T, cc)
        x = self.conv_in(x)
        for m in self.encoder:
            x = m(x, cond) if isinstance(m, ResBlock) else m(x)
        x = x.reshape(B, T, -1)
        if T == 1 and x.device.type == "cpu":
            x, hidden = self._lstm_step(x, hidden)
        else:
            x, hidden = self.lstm(x, hidden)  # (B, T, lstm_dim)
        logits = self.head(x)
        return logits[..., :3], logits[..., 3:], hidden

    def _lstm_step(self, x: Tensor, hidden):
        """One step of the LSTM, x (B, 1, F), through torch's own LSTM cell in fp32: the same function
        as nn.LSTM, whose oneDNN kernel on CPU costs 4-5 ms more per call at the small batches of
        imagination and play (6.2 vs 1.2 ms at batch 1, docs/performance.md)."""
        lstm = self.lstm
        B = x.shape[0]
        if hidden is None:
            h = c = x.new_zeros(B, lstm.hidden_size, dtype=torch.float32)
        else:
            h, c = hidden[0][0].float(), hidden[1][0].float()
        h, c = torch.lstm_cell(x[:, 0].float(), (h, c), lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0,
                               lstm.bias_hh_l0)
        return h[:, None], (h[None], c[None])

    def loss(self, obs, act, next_obs, rew, end, mask) -> tuple[Tensor, dict]:
        """Cross-entropy of the reward's sign and of the end, over real steps (mask (B, T) bool)."""
        logits_rew, logits_end, _ = self(obs, act, next_obs)
        return rew_end_loss(logits_rew, logits_end, rew, end, mask)


def rew_end_loss(logits_rew: Tensor, logits_end: Tensor, rew: Tensor, end: Tensor, mask: Tensor) -> tuple[Tensor, dict]:
    """Cross-entropy of the reward's sign (B, T, 3) and the end (B, T, 2) over the real steps."""
    target_rew = (rew.sign() + 1).long()  # -1, 0, 1 -> 0, 1, 2
    m = mask.flatten()
    ce_rew = F.cross_entropy(logits_rew.flatten(0, 1)[m], target_rew.flatten()[m])
    ce_end = F.cross_entropy(logits_end.flatten(0, 1)[m], end.long().flatten()[m])
    return ce_rew + ce_end, {"loss_rew": ce_rew.detach(), "loss_end": ce_end.detach()}


def precision_recall_f1(pred: Tensor, target: Tensor) -> dict:
    """For boolean predictions of a rare event (a nonzero reward, an end)."""
    tp = (pred & target).sum().item()
    fp = (pred & ~target).sum().item()
    fn = (~pred & target).sum().item()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
