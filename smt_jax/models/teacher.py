"""The teacher: a bidirectional encoder (past window -> memory) and a causal decoder (memory,
future inputs -> future targets). With an empty future the decoder is a readout."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from smt_jax.models import memory
from smt_jax.models.transformer import BlockOptions, Transformer, accumulation_dtype, causal_mask

Dtype = Any


def embed_tokens(embed: nn.Embed, tokens: jax.Array) -> jax.Array:
  """Embeds int tokens; padding (-1) embeds as token 0 and must be masked by the caller."""
  return embed(jnp.maximum(tokens, 0))


class TransformerFields(nn.Module):
  """The hyperparameters shared by the encoder, the decoder and the readout (fields only)."""

  vocab_size: int
  d_model: int
  depth: int
  num_heads: int
  mem_tokens: int
  mlp_ratio: int = 4
  dtype: Dtype = jnp.float32
  block: BlockOptions = BlockOptions()


class Encoder(TransformerFields):
  """Window of the last Tc tokens plus K learned registers -> memory state.

  __call__(x_window, mask=None): x_window int32 (B, Tc) with -1 at padding; mask bool (B, Tc)
  (default x_window >= 0). Returns m (B, K * d_model). Positions are relative to the window, so
  the memory of a window does not depend on where it sits in the sequence.
  """

  fsq_levels: int = 0
  register_std: float = 0.02  # Std of the registers' normal initialisation.
  remat: bool = False  # Recompute each block in the backward pass (nn.remat per block).

  @nn.compact
  def __call__(self, x_window: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    if mask is None:
      mask = x_window >= 0
    batch, window = x_window.shape
    embed = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype, name="embed")
    registers = self.param(
      "registers",
      nn.initializers.normal(self.register_std),
      (self.mem_tokens, self.d_model),
      jnp.float32,
    )
    h = jnp.concatenate(
      [
        embed_tokens(embed, x_window),
        jnp.broadcast_to(registers.astype(self.dtype), (batch,) + registers.shape),
      ],
      axis=1,
    )
    key_valid = jnp.concatenate([mask, jnp.ones((batch, self.mem_tokens), bool)], axis=1)
    attn_mask = jnp.broadcast_to(key_valid[:, None, :], (batch,) + key_valid.shape[1:] * 2)
    positions = jnp.arange(window + self.mem_tokens)
    h = Transformer(
      self.depth,
      self.num_heads,
      self.mlp_ratio,
      self.dtype,
      self.block,
      self.remat,
      name="transformer",
    )(h, attn_mask, positions)
    return memory.finalize(h[:, window:], self.fsq_levels)


class Decoder(TransformerFields):
  """Causal Transformer over [K memory tokens; embedded future inputs] -> next-token logits.

  __call__(m, x_future): m (B, Z); x_future int32 (B, n) with n >= 0 (the inputs x_{t+1..t+n};
  -1 allowed past the end of a sequence). Returns float32 logits (B, n + 1, V) (float64 for a
  float64 model): the last memory token predicts the first target y_t, the future input x_{t+j}
  predicts y_{t+j}.

  With `shared_embed` the decoder owns no token embedding: `embedding` (V, d_model), the
  encoder's, embeds the future inputs (and may be None when there are none).
  """

  shared_embed: bool = False

  @nn.compact
  def __call__(
    self, m: jax.Array, x_future: jax.Array, embedding: jax.Array | None = None
  ) -> jax.Array:
    if self.shared_embed:
      if x_future.shape[1] and embedding is None:
        raise ValueError("A decoder with shared_embed needs the encoder's `embedding`.")
      embedded = (
        jnp.take(embedding, jnp.maximum(x_future, 0), axis=0).astype(self.dtype)
        if x_future.shape[1]
        else jnp.zeros(x_future.shape + (self.d_model,), self.dtype)
      )
    else:
      embed = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype, name="embed")
      embedded = embed_tokens(embed, x_future)
    h = jnp.concatenate([memory.unflatten(m, self.mem_tokens).astype(self.dtype), embedded], axis=1)
    length = h.shape[1]
    h = Transformer(
      self.depth, self.num_heads, self.mlp_ratio, self.dtype, self.block, name="transformer"
    )(h, causal_mask(length), jnp.arange(length))
    head = nn.Dense(self.vocab_size, dtype=self.dtype, name="head")
    logits = head(h[:, self.mem_tokens - 1 :])
    return logits.astype(accumulation_dtype(logits.dtype))


class Readout(TransformerFields):
  """g(m) -> next-token logits (B, V): a decoder with an empty future.

  Its parameters are {"decoder": <Decoder params>}, so a trained teacher decoder of the same
  depth can be copied in as the RNN's readout (`shared_embed` as the teacher decoder's: then
  neither holds a token embedding).
  """

  shared_embed: bool = False

  @nn.compact
  def __call__(self, m: jax.Array) -> jax.Array:
    decoder = Decoder(
      self.vocab_size,
      self.d_model,
      self.depth,
      self.num_heads,
      self.mem_tokens,
      self.mlp_ratio,
      self.dtype,
      self.block,
      shared_embed=self.shared_embed,
      name="decoder",
    )
    return decoder(m, jnp.zeros((m.shape[0], 0), jnp.int32))[:, 0]
