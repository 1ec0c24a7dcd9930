"""The streaming teacher encoder: the memories of every position of a sequence in one pass.

The window encoder (`teacher.Encoder`) encodes each position's Tc-token window separately, so a
sequence of T memories costs T windows of Tc tokens. The streaming encoder runs one token trunk
over the sequence and, per position t, K register queries that read the trunk up to t:

  trunk   token s attends the tokens s' with s - Tc < s' <= s (causal; a sliding window of Tc
          tokens when Tc < T). It never attends registers.
  m_t     K registers at positions t + 1 .. t + K attend the trunk tokens s with t - Tc < s <= t
          (the same window as the window encoder's) and each other (bidirectionally), in every
          block; after the last block they are RMS-normalised into m_t exactly as the window
          encoder's registers are (`memory.finalize`).
  m_{-1}  the registers of position -1 read no token: the memory of the empty past, the same
          function as the window encoder's all-padding window.

Inductive bias, against the window encoder: inside a window the window encoder contextualises
the tokens bidirectionally (a token sees later tokens of its window, and the registers); here a
token sees only earlier tokens, so the only bidirectional reading of the window is the registers'.
With Tc < T and more than one block, a token's trunk state also carries information from up to
depth * Tc tokens back (sliding windows compose), so m_t can depend on tokens before its own
window, which the window encoder's m_t cannot. With Tc >= T (the full past) m_t is a function
of x[0..t] in both encoders. Applied to one left-padded window (`Models.encode`), the streaming
encoder returns the memory of its last position.

The blocks take the window encoder's `BlockOptions` (head width, rotary fraction, exact GELU,
RMSNorm epsilon) and its register init std, and parameters have the same tree as
`teacher.Encoder`'s for every option, so one checkpoint serves both encoders.

Cost: attention is computed in blocks of `chunk` positions, each reading its own and the
ceil(Tc / chunk) previous blocks of trunk keys, so attention memory is
O(B * T * (1 + K) * heads * (Tc + chunk)) instead of O((T * K)^2); MLPs and projections are
O(B * T * (1 + K)). With Tc >= T it is one block: dense causal attention, O(B * T^2 * (1 + K)).
"""

import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from smt_jax.models import memory
from smt_jax.models.transformer import MLP, BlockOptions, RMSNorm, accumulation_dtype, apply_rope

Dtype = Any


def banded_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  q_pos: jax.Array,
  key_valid: jax.Array,
  window: int,
  chunk: int,
  extra_k: jax.Array,
  extra_v: jax.Array,
  extra_mask: jax.Array,
) -> jax.Array:
  """Blocked attention of several queries per slot onto a band of keys, plus per-slot extras.

  Query j of slot i (position q_pos[i, j]) attends key slot s (position s) iff
  q_pos[i, j] - window < s <= q_pos[i, j] and key_valid[:, s], and the extra keys of its own
  slot where extra_mask[j] (one softmax over both sets).

  Args:
    q: (B, S, Q, H, Dh) queries (already rotated).
    k, v: (B, S, H, Dh) keys (rotated) and values, one per slot.
    q_pos: (S, Q) int positions of the queries, as masking sees them.
    key_valid: (B, S) bool.
    window: keys per query at most (the band width).
    chunk: slots per block.
    extra_k, extra_v: (B, S, E, H, Dh) keys and values that only the queries of the same slot see.
    extra_mask: (Q, E) bool, which queries see the extras.
  Returns:
    (B, S, Q, H, Dh) attention outputs.
  """
  batch, slots, nq, heads, dh = q.shape
  chunk = max(1, min(chunk, slots))
  n = -(-slots // chunk)
  back = min(n - 1, -(-window // chunk))  # previous blocks a block's band can reach
  pad = n * chunk - slots

  def blocks(a, fill=0):  # (B, S, ...) -> (B, n, chunk, ...) with `back` blocks of padding first
    widths = [(0, 0), (back * chunk, pad)] + [(0, 0)] * (a.ndim - 2)
    a = jnp.pad(a, widths, constant_values=fill)
    return a.reshape((batch, n + back, chunk) + a.shape[2:])

  qb = jnp.pad(q, [(0, 0), (0, pad)] + [(0, 0)] * 3).reshape((batch, n, chunk, nq, heads, dh))
  kb, vb, validb = blocks(k), blocks(v), blocks(key_valid, False)
  k_pos = (jnp.arange(-back * chunk, (n + back) * chunk - back * chunk)).reshape(n + back, chunk)
  qp = jnp.pad(q_pos, [(0, pad), (0, 0)], constant_values=-(2**30)).reshape(n, chunk, nq)
  acc = accumulation_dtype(q.dtype)

  logits, masks = [], []
  for i in range(back + 1):  # key block n - back + i for query block n
    kk = kb[:, i : i + n]  # (B, n, chunk, H, Dh)
    logits.append(jnp.einsum("bncqhd,bnkhd->bnhcqk", qb, kk))
    kp = k_pos[i : i + n]  # (n, chunk)
    band = (kp[:, None, None, :] <= qp[..., None]) & (kp[:, None, None, :] > qp[..., None] - window)
    masks.append(band[None, :, None] & validb[:, i : i + n, None, None, None, :])
  eb = jnp.pad(extra_k, [(0, 0), (0, pad)] + [(0, 0)] * 3).reshape(
    (batch, n, chunk) + extra_k.shape[2:]
  )
  evb = jnp.pad(extra_v, [(0, 0), (0, pad)] + [(0, 0)] * 3).reshape(
    (batch, n, chunk) + extra_v.shape[2:]
  )
  logits.append(jnp.einsum("bncqhd,bncehd->bnhcqe", qb, eb))
  masks.append(extra_mask[None, None, None, None])
  sizes = [a.shape[-1] for a in logits]
  logits = jnp.concatenate([a.astype(acc) for a in logits], axis=-1) / jnp.sqrt(dh).astype(acc)
  mask_shape = (batch, n, 1, chunk, nq)
  mask = jnp.concatenate([jnp.broadcast_to(m, mask_shape + m.shape[-1:]) for m in masks], axis=-1)
  logits = jnp.where(mask, logits, jnp.finfo(acc).min)
  weights = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
  parts = jnp.split(weights, list(itertools.accumulate(sizes))[:-1], axis=-1)
  out = jnp.einsum("bnhcqe,bncehd->bncqhd", parts[-1], evb)
  for i in range(back + 1):
    out = out + jnp.einsum("bnhcqk,bnkhd->bncqhd", parts[i], vb[:, i : i + n])
  return out.reshape((batch, n * chunk, nq, heads, dh))[:, :slots]


class StreamAttention(nn.Module):
  """Attention of the trunk and the registers (same parameters as `transformer.Attention`)."""

  num_heads: int
  window: int
  chunk: int
  dtype: Dtype = jnp.float32
  options: BlockOptions = BlockOptions()

  @nn.compact
  def __call__(self, tok, reg, tok_valid):
    """tok (B, S, d) trunk, reg (B, S, K, d) registers of slot s = position s - 1."""
    batch, slots, d = tok.shape
    mem_tokens = reg.shape[2]
    head_dim = self.options.head_width(d, self.num_heads)
    rotary = self.options.rotary_dims(head_dim)
    dense = lambda name: nn.DenseGeneral(
      (self.num_heads, head_dim), use_bias=False, dtype=self.dtype, name=name
    )
    query, key, value = dense("query"), dense("key"), dense("value")
    # Positions: trunk token s at s; register j of slot s (memory position t = s - 1) at s + j,
    # i.e. j + 1 after the last token it reads, as in the window encoder.
    both = jnp.concatenate([tok[:, :, None], reg], axis=2)  # (B, S, 1 + K, d)
    rope_pos = jnp.arange(slots)[:, None] + jnp.concatenate(
      [jnp.zeros((1,), jnp.int32), jnp.arange(mem_tokens)]
    )
    flat = lambda a: a.reshape((batch, slots * (1 + mem_tokens)) + a.shape[3:])
    unflat = lambda a: a.reshape((batch, slots, 1 + mem_tokens) + a.shape[2:])
    q = unflat(apply_rope(flat(query(both)), rope_pos.reshape(-1), dims=rotary))
    kv = unflat(apply_rope(flat(key(both)), rope_pos.reshape(-1), dims=rotary))
    vv = value(both)
    # Masking positions: the trunk token reads up to itself, the registers of slot s up to s - 1.
    q_pos = jnp.arange(slots)[:, None] - jnp.concatenate(
      [jnp.zeros((1,), jnp.int32), jnp.ones((mem_tokens,), jnp.int32)]
    )
    extra_mask = jnp.concatenate(
      [jnp.zeros((1, mem_tokens), bool), jnp.ones((mem_tokens, mem_tokens), bool)]
    )
    out = banded_attention(
      q,
      kv[:, :, 0],
      vv[:, :, 0],
      q_pos,
      tok_valid,
      self.window,
      self.chunk,
      kv[:, :, 1:],
      vv[:, :, 1:],
      extra_mask,
    )
    out = nn.DenseGeneral(d, axis=(-2, -1), use_bias=False, dtype=self.dtype, name="out")(out)
    return out[:, :, 0], out[:, :, 1:]


class StreamBlock(nn.Module):
  """Pre-norm residual block over trunk and registers (same parameters as `transformer.Block`)."""

  num_heads: int
  window: int
  chunk: int
  mlp_ratio: int = 4
  dtype: Dtype = jnp.float32
  options: BlockOptions = BlockOptions()

  @nn.compact
  def __call__(self, tok, reg, tok_valid):
    eps = self.options.norm_eps
    norm_attn = RMSNorm(self.dtype, eps, name="norm_attn")
    a_tok, a_reg = StreamAttention(
      self.num_heads, self.window, self.chunk, self.dtype, self.options, name="attn"
    )(norm_attn(tok), norm_attn(reg), tok_valid)
    tok, reg = tok + a_tok, reg + a_reg
    norm_mlp, mlp = (
      RMSNorm(self.dtype, eps, name="norm_mlp"),
      MLP(self.mlp_ratio, self.dtype, self.options.exact_gelu, name="mlp"),
    )
    return tok + mlp(norm_mlp(tok)), reg + mlp(norm_mlp(reg))


class StreamTransformer(nn.Module):
  """`depth` stream blocks and a final RMSNorm (same parameters as `transformer.Transformer`)."""

  depth: int
  num_heads: int
  window: int
  chunk: int
  mlp_ratio: int = 4
  dtype: Dtype = jnp.float32
  options: BlockOptions = BlockOptions()
  remat: bool = False

  @nn.compact
  def __call__(self, tok, reg, tok_valid):
    block = nn.remat(StreamBlock) if self.remat else StreamBlock
    for i in range(self.depth):
      tok, reg = block(
        self.num_heads,
        self.window,
        self.chunk,
        self.mlp_ratio,
        self.dtype,
        self.options,
        name=f"block_{i}",
      )(tok, reg, tok_valid)
    return RMSNorm(self.dtype, self.options.norm_eps, name="final_norm")(reg)


class StreamEncoder(nn.Module):
  """Memories of every position of a sequence in one pass (see the module docstring).

  __call__(x, mask=None): x int32 (B, L), -1 = padding (masked; mask bool (B, L) overrides).
  Returns memories (B, L + 1, K * d_model) of positions -1 .. L - 1 (slot 0 = the empty past).
  `window` = Tc (>= L: causal over the whole sequence); `chunk` = positions per attention block
  (0 = window). `block` and `register_std` as `teacher.Encoder`'s.
  """

  vocab_size: int
  d_model: int
  depth: int
  num_heads: int
  mem_tokens: int
  window: int
  mlp_ratio: int = 4
  dtype: Dtype = jnp.float32
  block: BlockOptions = BlockOptions()
  fsq_levels: int = 0
  register_std: float = 0.02  # Std of the registers' normal initialisation.
  chunk: int = 0
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    if mask is None:
      mask = x >= 0
    batch, length = x.shape
    embed = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype, name="embed")
    registers = self.param(
      "registers",
      nn.initializers.normal(self.register_std),
      (self.mem_tokens, self.d_model),
      jnp.float32,
    )
    # Slot s holds trunk token s (slot L: none) and the registers of position s - 1.
    tok = jnp.pad(embed(jnp.maximum(x, 0)), [(0, 0), (0, 1), (0, 0)])
    tok_valid = jnp.pad(mask, [(0, 0), (0, 1)])
    reg = jnp.broadcast_to(
      registers.astype(self.dtype), (batch, length + 1, self.mem_tokens, self.d_model)
    )
    chunk = self.chunk or self.window
    reg = StreamTransformer(
      self.depth,
      self.num_heads,
      self.window,
      chunk,
      self.mlp_ratio,
      self.dtype,
      self.block,
      self.remat,
      name="transformer",
    )(tok, reg, tok_valid)
    return memory.finalize(reg, self.fsq_levels)
