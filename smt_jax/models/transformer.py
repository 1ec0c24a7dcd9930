"""Transformer building blocks: RMSNorm, rotary positions, masked attention, pre-norm blocks.

Every module works on token sequences of shape (B, L, d) with a boolean attention mask of shape
(B, L, L) or (L, L) (True = may attend). Layers are stacked with a Python loop, never a scan,
so no loop over layers appears in the jaxpr of the objectives that use them.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def accumulation_dtype(dtype: Dtype) -> Dtype:
  """The dtype reductions run in: float32, or float64 for float64 inputs (never bfloat16)."""
  return jnp.promote_types(dtype, jnp.float32)


def rms_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Scales the last axis to unit root-mean-square (no learned scale), accumulating in float32."""
  xa = x.astype(accumulation_dtype(x.dtype))
  return (xa * jax.lax.rsqrt(jnp.mean(xa * xa, axis=-1, keepdims=True) + eps)).astype(x.dtype)


class RMSNorm(nn.Module):
  """RMS normalisation with a learned per-feature scale.

  eps > 0: x / sqrt(mean(x^2) + eps). eps = 0: x * sqrt(d) / max(||x||, 1e-12), as x-transformers
  computes it (the two differ where activations are small, e.g. from a zero memory).
  """

  dtype: Dtype = jnp.float32
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    xa = x.astype(accumulation_dtype(x.dtype))
    if self.eps > 0:
      normed = rms_normalize(xa, self.eps)
    else:
      # max(|x|, 1e-12) with a finite gradient at x = 0.
      norm = jnp.sqrt(jnp.maximum(jnp.sum(xa * xa, axis=-1, keepdims=True), 1e-24))
      normed = xa * (x.shape[-1] ** 0.5) / norm
    return (normed * scale).astype(self.dtype)


@dataclasses.dataclass(frozen=True)
class BlockOptions:
  """Architecture options of every Transformer block; the defaults are smt_jax's own choices,
  `smt_jax.interop.original_options` sets the PyTorch original's (x-transformers') values."""

  head_dim: int = 0  # Width of each attention head; 0 = d_model / num_heads.
  rotary_fraction: float = 1.0  # Leading fraction of each head's features that RoPE rotates.
  exact_gelu: bool = False  # erf GELU in the MLP; False = the tanh approximation.
  norm_eps: float = 1e-6  # RMSNorm epsilon; 0 = x-transformers' form (see RMSNorm).

  def head_width(self, d_model: int, num_heads: int) -> int:
    """head_dim, or d_model / num_heads when it is 0."""
    if self.head_dim:
      return self.head_dim
    if d_model % num_heads:
      raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}.")
    return d_model // num_heads

  def rotary_dims(self, head_dim: int) -> int:
    return int(round(head_dim * self.rotary_fraction))


def apply_rope(
  x: jax.Array, positions: jax.Array, base: float = 10_000.0, dims: int | None = None
) -> jax.Array:
  """Rotary position embedding of the first `dims` features (all when None); feature i is
  paired with i + dims / 2.

  Args:
    x: (B, L, H, Dh) queries or keys, dims (default Dh) even.
    positions: (L,) or (B, L) integer positions.
  """
  if dims is not None and dims < x.shape[-1]:
    return jnp.concatenate([apply_rope(x[..., :dims], positions, base), x[..., dims:]], axis=-1)
  half = x.shape[-1] // 2
  freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = positions.astype(accumulation_dtype(x.dtype))[..., None] * freq  # (..., L, half)
  if angle.ndim == 2:
    angle = angle[None]
  sin, cos = jnp.sin(angle)[:, :, None, :], jnp.cos(angle)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(angle.dtype), 2, axis=-1)
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return rotated.astype(x.dtype)


class Attention(nn.Module):
  """Multi-head self-attention with rotary positions and a boolean mask."""

  num_heads: int
  dtype: Dtype = jnp.float32
  options: BlockOptions = BlockOptions()

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, positions: jax.Array) -> jax.Array:
    d = x.shape[-1]
    head_dim = self.options.head_width(d, self.num_heads)
    dense = lambda name: nn.DenseGeneral(
      (self.num_heads, head_dim), use_bias=False, dtype=self.dtype, name=name
    )
    rotary = self.options.rotary_dims(head_dim)
    q = apply_rope(dense("query")(x), positions, dims=rotary)
    k = apply_rope(dense("key")(x), positions, dims=rotary)
    v = dense("value")(x)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    logits = logits.astype(accumulation_dtype(logits.dtype)) / jnp.sqrt(head_dim)
    mask = jnp.broadcast_to(mask, (x.shape[0],) + mask.shape[-2:])[:, None]
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return nn.DenseGeneral(d, axis=(-2, -1), use_bias=False, dtype=self.dtype, name="out")(out)


class MLP(nn.Module):
  """Two-layer GELU feed-forward network of width mlp_ratio * d."""

  mlp_ratio: int = 4
  dtype: Dtype = jnp.float32
  exact_gelu: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = x.shape[-1]
    h = nn.gelu(
      nn.Dense(self.mlp_ratio * d, dtype=self.dtype, name="up")(x), approximate=not self.exact_gelu
    )
    return nn.Dense(d, dtype=self.dtype, name="down")(h)


class Block(nn.Module):
  """Pre-norm residual block: x + Attn(RMSNorm(x)), then x + MLP(RMSNorm(x))."""

  num_heads: int
  mlp_ratio: int = 4
  dtype: Dtype = jnp.float32
  options: BlockOptions = BlockOptions()

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, positions: jax.Array) -> jax.Array:
    eps = self.options.norm_eps
    x = x + Attention(self.num_heads, self.dtype, self.options, name="attn")(
      RMSNorm(self.dtype, eps, name="norm_attn")(x), mask, positions
    )
    mlp = MLP(self.mlp_ratio, self.dtype, self.options.exact_gelu, name="mlp")
    return x + mlp(RMSNorm(self.dtype, eps, name="norm_mlp")(x))


class Transformer(nn.Module):
  """`depth` blocks followed by a final RMSNorm: (B, L, d) -> (B, L, d).

  remat: recompute each block's activations in the backward pass (`nn.remat` per block), so only
  the block inputs are stored; the parameters are the same either way.
  """

  depth: int
  num_heads: int
  mlp_ratio: int = 4
  dtype: Dtype = jnp.float32
  options: BlockOptions = BlockOptions()
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, positions: jax.Array) -> jax.Array:
    block = nn.remat(Block) if self.remat else Block
    for i in range(self.depth):
      x = block(self.num_heads, self.mlp_ratio, self.dtype, self.options, name=f"block_{i}")(
        x, mask, positions
      )
    return RMSNorm(self.dtype, self.options.norm_eps, name="final_norm")(x)


def causal_mask(length: int) -> jax.Array:
  """(L, L) lower-triangular boolean mask."""
  return jnp.tril(jnp.ones((length, length), dtype=bool))
