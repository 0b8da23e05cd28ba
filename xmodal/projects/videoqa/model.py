"""The two-stream video QA model: streams of video features matched against the question and
each candidate answer, one score per candidate (the paper's structure; TVQA's context matching,
Lei et al., 2018, with the two-stream video features in place of TVQA's).

    text:     words -> embedding -> BiLSTM (shared by question and answers) -> [.., L, D]
    a stream: rgb  = VideoCNN(frames)  (SE blocks, temporal pooling) -> [B, T', width]
              flow = VideoCNN(flow)    (the same architecture, its own weights)
              text = the question itself (the text-only model has no video stream)
              then the level-adjusting layer: Dense(D) + LayerNorm, and LayerNorm on the text
              features, so visual and textual features meet at the same scale
    matching: per stream, context C [T', D] attends over the question's words (C_q) and over
              each candidate's words (C_a); [C, C_q, C_a, C*C_q, C*C_a] -> Dense -> BiLSTM over
              time -> max over time -> Dense -> one score
    score:    the sum of the streams' scores, per candidate

``streams`` picks the ablations: ("rgb", "flow") is the paper's model, ("rgb",) and ("flow",)
one stream each, ("text",) the text-only row (question and answers, no video).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.rnn import BiLSTM
from xmodal.nn.video_cnn import VideoCNN

STREAMS = ("rgb", "flow", "text")


def attend(x: jax.Array, y: jax.Array, y_mask: jax.Array) -> jax.Array:
    """Each row of x [..., T, D] as a softmax-weighted mix of the rows of y [..., L, D] (scaled
    dot products; rows of y where ``y_mask`` [..., L] is False get no weight)."""
    sims = jnp.einsum("...td,...ld->...tl", x, y) / jnp.sqrt(x.shape[-1]).astype(x.dtype)
    sims = jnp.where(y_mask[..., None, :], sims, -1e9)
    return jnp.einsum("...tl,...ld->...td", jax.nn.softmax(sims, axis=-1), y)


class ContextMatching(nn.Module):
    """One stream's score for each candidate (see the module docstring)."""
    hidden: int

    @nn.compact
    def __call__(self, context, context_mask, question, question_mask, answers, answer_mask):
        # context [B, Q, T, D] (mask [B, Q, T]); question [B, Q, L, D]; answers [B, Q, K, M, D]
        k = answers.shape[2]
        c_q = attend(context, question, question_mask)                     # [B, Q, T, D]
        c = jnp.broadcast_to(context[:, :, None], context.shape[:2] + (k,) + context.shape[2:])
        c_a = attend(c, answers, answer_mask)                                # [B, Q, K, T, D]
        c_q = jnp.broadcast_to(c_q[:, :, None], c.shape)
        fused = jnp.concatenate([c, c_q, c_a, c * c_q, c * c_a], axis=-1)
        fused = nn.relu(nn.Dense(self.hidden, name="fuse")(fused))
        mask = jnp.broadcast_to(context_mask[:, :, None], c.shape[:-1])
        h = BiLSTM(self.hidden, name="lstm")(fused, mask.sum(-1))
        pooled = jnp.max(jnp.where(mask[..., None], h, -1e9), axis=-2)
        return nn.Dense(1, name="score")(pooled)[..., 0]                  # [B, Q, K]


@MODELS.register("videoqa")
class VideoQA(nn.Module):
    vocab_size: int
    streams: Sequence[str] = ("rgb", "flow")
    embed_dim: int = 64
    hidden: int = 64              # LSTM width; text and context features are 2 * hidden
    rgb: Any = None               # VideoCNN settings of the RGB stream
    flow: Any = None              # VideoCNN settings of the flow stream
    dropout: float = 0.1
    dtype: Any = jnp.float32      # the CNN streams' compute dtype (the spec's precision)
    param_dtype: Any = jnp.float32

    def setup(self):
        unknown = [s for s in self.streams if s not in STREAMS]
        if unknown or not self.streams:
            raise ValueError(f"videoqa streams {tuple(self.streams)}: each must be one of "
                             f"{', '.join(STREAMS)}, and at least one")

    @nn.compact
    def __call__(self, video, flow, question, candidates, train: bool = False) -> jax.Array:
        """video [B, T, H, W, 3] uint8, flow [B, T, H, W, 2], question [B, Q, L] and
        candidates [B, Q, K, M] word ids (0 = padding) -> scores [B, Q, K]."""
        d = 2 * self.hidden
        embed = nn.Embed(self.vocab_size, self.embed_dim, name="embed")
        text_lstm = BiLSTM(self.hidden, name="text_lstm")
        text_norm = nn.LayerNorm(name="text_level")
        q_mask, a_mask = question > 0, candidates > 0
        drop = nn.Dropout(self.dropout, deterministic=not train)
        q = text_norm(text_lstm(drop(embed(question)), jnp.maximum(q_mask.sum(-1), 1)))
        a = text_norm(text_lstm(drop(embed(candidates)), jnp.maximum(a_mask.sum(-1), 1)))
        b, nq = question.shape[:2]
        total = 0.0
        for stream in self.streams:
            if stream == "text":
                context, mask = q, q_mask | (jnp.arange(q.shape[2]) == 0)
            else:
                frames = video if stream == "rgb" else flow
                settings = dict((self.rgb if stream == "rgb" else self.flow) or {})
                feats = VideoCNN(**settings, dtype=self.dtype, name=f"{stream}_cnn")(frames,
                                                                                    train)
                # The level-adjusting layer: visual features onto the text features' scale.
                feats = nn.LayerNorm(name=f"{stream}_level")(nn.Dense(d, name=f"{stream}_adjust")(
                    feats))
                context = jnp.broadcast_to(feats[:, None], (b, nq) + feats.shape[1:])
                mask = jnp.ones(context.shape[:-1], bool)
            total = total + ContextMatching(self.hidden, name=f"match_{stream}")(
                drop(context), mask, q, q_mask, a, a_mask)
        return total
