"""Memory states: K tokens of width d, RMS-normalised per token, flattened to (B, Z), Z = K * d."""

import jax
import jax.numpy as jnp

from smt_jax.models.transformer import rms_normalize


def flatten(tokens: jax.Array) -> jax.Array:
  """(..., K, d) -> (..., K * d)."""
  return tokens.reshape(tokens.shape[:-2] + (-1,))


def unflatten(m: jax.Array, mem_tokens: int) -> jax.Array:
  """(..., Z) -> (..., K, Z // K)."""
  return m.reshape(m.shape[:-1] + (mem_tokens, m.shape[-1] // mem_tokens))


def quantize_fsq(tokens: jax.Array, levels: int) -> jax.Array:
  """Finite scalar quantisation with a straight-through gradient.

  Each feature is squashed to (-1, 1) and rounded to one of `levels` evenly spaced values; the
  backward pass treats the rounding as the identity.
  """
  half = (levels - 1) / 2.0
  bounded = jnp.tanh(tokens.astype(jnp.float32)) * half
  quantized = bounded + jax.lax.stop_gradient(jnp.round(bounded) - bounded)
  return (quantized / half).astype(tokens.dtype)


def finalize(tokens: jax.Array, fsq_levels: int = 0) -> jax.Array:
  """Turns raw memory tokens (..., K, d) into a memory state (..., Z).

  Optionally quantises (fsq_levels > 1), then RMS-normalises each token without a learned scale,
  so encoder memories and updater outputs live in the same space.
  """
  if fsq_levels > 1:
    tokens = quantize_fsq(tokens, fsq_levels)
  return flatten(rms_normalize(tokens))


def unit_tokens(m: jax.Array, mem_tokens: int) -> jax.Array:
  """Memory states (..., Z) -> all their tokens as unit vectors, shape (N, d), in float32."""
  tokens = unflatten(m.astype(jnp.float32), mem_tokens).reshape(-1, m.shape[-1] // mem_tokens)
  return tokens / (jnp.linalg.norm(tokens, axis=-1, keepdims=True) + 1e-8)
