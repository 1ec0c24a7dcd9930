"""RNN updaters m_next = f(m, x_t), one interface for every architecture.

An updater maps a memory state m (B, Z) and the next input token x_t int32 (B,) to the next
memory state (B, Z), in the same RMS-normalised token space as the encoder's memories. It is a
pure function of (params, m, x_t): SMT vmaps it, DMT, BPTT and evaluation scan it.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from smt_jax.models import memory
from smt_jax.models.transformer import BlockOptions, RMSNorm, Transformer, accumulation_dtype

Dtype = Any


class TransformerTokenCore(nn.Module):
  """The K memory tokens plus the input token through a bidirectional Transformer; the first K
  outputs are the new memory tokens."""

  vocab_size: int
  mem_tokens: int
  depth: int
  num_heads: int
  mlp_ratio: int = 4
  dtype: Dtype = jnp.float32
  block: BlockOptions = BlockOptions()

  @nn.compact
  def __call__(self, m: jax.Array, x_t: jax.Array) -> jax.Array:
    tokens = memory.unflatten(m, self.mem_tokens).astype(self.dtype)
    d = tokens.shape[-1]
    x_emb = nn.Embed(self.vocab_size, d, dtype=self.dtype, name="embed")(x_t)[:, None]
    h = jnp.concatenate([tokens, x_emb], axis=1)
    length = self.mem_tokens + 1
    h = Transformer(
      self.depth, self.num_heads, self.mlp_ratio, self.dtype, self.block, name="transformer"
    )(h, jnp.ones((length, length), bool), jnp.arange(length))
    return h[:, : self.mem_tokens]


class MLPCore(nn.Module):
  """Residual MLP on [m; embed(x_t)]: depth blocks z <- z + W2 gelu(W1 norm([z; e]))."""

  vocab_size: int
  mem_tokens: int
  depth: int
  hidden: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, m: jax.Array, x_t: jax.Array) -> jax.Array:
    z = m.astype(self.dtype)
    e = nn.Embed(self.vocab_size, self.hidden, dtype=self.dtype, name="embed")(x_t)
    for i in range(self.depth):
      h = RMSNorm(self.dtype, name=f"norm_{i}")(jnp.concatenate([z, e], axis=-1))
      h = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype, name=f"up_{i}")(h))
      z = z + nn.Dense(m.shape[-1], dtype=self.dtype, name=f"down_{i}")(h)
    return memory.unflatten(z, self.mem_tokens)


class CellCore(nn.Module):
  """A classic recurrent cell over the whole memory, fed the embedded input token.

  kind: "gru" (hidden state = the memory, Z units), "lstm" (the memory holds [h; c], Z / 2 units
  each) or "elman" (m_next = tanh(W m + U embed(x_t) + b)).
  """

  kind: str
  vocab_size: int
  mem_tokens: int
  hidden: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, m: jax.Array, x_t: jax.Array) -> jax.Array:
    e = nn.Embed(self.vocab_size, self.hidden, dtype=self.dtype, name="embed")(x_t)
    m = m.astype(self.dtype)
    size = m.shape[-1]
    if self.kind == "gru":
      m_next, _ = nn.GRUCell(size, dtype=self.dtype, name="cell")(m, e)
    elif self.kind == "lstm":
      h, c = jnp.split(m, 2, axis=-1)
      (c, h), _ = nn.OptimizedLSTMCell(size // 2, dtype=self.dtype, name="cell")((c, h), e)
      m_next = jnp.concatenate([h, c], axis=-1)
    else:
      m_next = jnp.tanh(
        nn.Dense(size, use_bias=False, dtype=self.dtype, name="recurrent")(m)
        + nn.Dense(size, dtype=self.dtype, name="input")(e)
      )
    return memory.unflatten(m_next, self.mem_tokens)


UPDATER_NAMES = ("transformer", "mlp", "gru", "lstm", "elman")


class Updater(nn.Module):
  """f(m, x_t) -> m_next for the architecture `kind`, plus its initial memory.

  __call__(m (B, Z), x_t int32 (B,)) -> (B, Z) in m's dtype. initial_memory(batch_size) -> (B, Z):
  zeros, or a learned memory state when `learned_init`; memories are carried in float32 (float64
  for a float64 model) whatever the compute dtype.
  """

  kind: str
  vocab_size: int
  mem_tokens: int
  mem_size: int
  depth: int
  num_heads: int
  hidden: int
  mlp_ratio: int = 4
  fsq_levels: int = 0
  learned_init: bool = False
  dtype: Dtype = jnp.float32
  block: BlockOptions = BlockOptions()  # Options of the transformer-token updater's blocks.

  def setup(self):
    common = dict(vocab_size=self.vocab_size, mem_tokens=self.mem_tokens, dtype=self.dtype)
    if self.kind == "transformer":
      self.core = TransformerTokenCore(
        depth=self.depth,
        num_heads=self.num_heads,
        mlp_ratio=self.mlp_ratio,
        block=self.block,
        **common,
      )
    elif self.kind == "mlp":
      self.core = MLPCore(depth=self.depth, hidden=self.hidden, **common)
    elif self.kind in ("gru", "lstm", "elman"):
      self.core = CellCore(kind=self.kind, hidden=self.hidden, **common)
    else:
      raise ValueError(
        f"Unknown updater {self.kind!r}; model.rnn.updater must be one of {UPDATER_NAMES}."
      )
    if self.learned_init:
      self.init_memory = self.param(
        "init_memory", nn.initializers.normal(1.0), (self.mem_size,), jnp.float32
      )

  def __call__(self, m: jax.Array, x_t: jax.Array) -> jax.Array:
    return memory.finalize(self.core(m, x_t), self.fsq_levels).astype(m.dtype)

  def initial_memory(self, batch_size: int) -> jax.Array:
    if self.learned_init:
      m0 = memory.finalize(memory.unflatten(self.init_memory, self.mem_tokens))
    else:
      m0 = jnp.zeros((self.mem_size,))
    m0 = m0.astype(accumulation_dtype(self.dtype))
    return jnp.broadcast_to(m0, (batch_size, self.mem_size))

  def init_all(self, m: jax.Array, x_t: jax.Array) -> jax.Array:
    """Touches every parameter (for `init`)."""
    return self(self.initial_memory(m.shape[0]) + m, x_t)
