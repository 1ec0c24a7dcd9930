"""Flax modules of smt_jax and `Models`, the bundle of pure functions the objectives call.

Parameters are a dict of four groups, each a Flax "params" tree:
  {"encoder": ..., "decoder": ...}   the teacher
  {"updater": ..., "readout": ...}   the RNN
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections

from smt_jax.models.stream import StreamEncoder
from smt_jax.models.teacher import Decoder, Encoder, Readout
from smt_jax.models.transformer import BlockOptions
from smt_jax.models.updaters import UPDATER_NAMES, Updater

GROUPS = ("encoder", "decoder", "updater", "readout")
TEACHER_GROUPS = ("encoder", "decoder")
RNN_GROUPS = ("updater", "readout")
ENCODER_NAMES = ("window", "stream")


@dataclasses.dataclass(frozen=True)
class Models:
  """The teacher and RNN modules, with pure apply functions over the grouped parameters."""

  encoder: Encoder | StreamEncoder
  decoder: Decoder
  updater: Updater
  readout: Readout
  encoder_window: int  # Tc, the length of the encoder's context window.
  buckets: int = 1  # Window encoder: length classes of all-position encodings (1 = no bucketing).

  @property
  def streaming(self) -> bool:
    """Whether the encoder computes every position's memory in one pass (`StreamEncoder`)."""
    return isinstance(self.encoder, StreamEncoder)

  def init(self, rng: jax.Array, future: int) -> dict:
    """Fresh parameters for every group (float32); `future` = decoder inputs at init."""
    keys = dict(zip(GROUPS, jax.random.split(rng, len(GROUPS))))
    m = jnp.zeros((1, self.updater.mem_size), jnp.float32)
    x = jnp.zeros((1,), jnp.int32)
    encoder = self.encoder.init(keys["encoder"], jnp.zeros((1, self.encoder_window), jnp.int32))
    variables = {
      "encoder": encoder,
      "decoder": self.decoder.init(
        keys["decoder"],
        m,
        jnp.zeros((1, future), jnp.int32),
        self._shared_embedding(encoder["params"]),
      ),
      "updater": self.updater.init(keys["updater"], m, x, method=Updater.init_all),
      "readout": self.readout.init(keys["readout"], m),
    }
    return {group: v["params"] for group, v in variables.items()}

  def encode(self, params: dict, x_window: jax.Array) -> jax.Array:
    """(B, Tc) tokens, -1 = padding -> memory (B, Z). The streaming encoder returns the memory
    of the window's last position."""
    m = self.encoder.apply({"params": params["encoder"]}, x_window)
    return m[:, -1] if self.streaming else m

  def encode_stream(self, params: dict, x: jax.Array) -> jax.Array:
    """Streaming encoder only: (B, T) tokens -> memories (B, T + 1, Z) of positions -1 .. T - 1
    (position -1 = the empty past), in one pass."""
    if not self.streaming:
      raise ValueError("encode_stream needs model.teacher.encoder='stream'.")
    return self.encoder.apply({"params": params["encoder"]}, x)

  def _shared_embedding(self, encoder_params: dict) -> jax.Array | None:
    """The encoder's token embedding when the decoder shares it (else None)."""
    return encoder_params["embed"]["embedding"] if self.decoder.shared_embed else None

  def decode(self, params: dict, m: jax.Array, x_future: jax.Array) -> jax.Array:
    """Memory (B, Z) and future inputs (B, n) -> float32 logits (B, n + 1, V)."""
    return self.decoder.apply(
      {"params": params["decoder"]}, m, x_future, self._shared_embedding(params["encoder"])
    )

  def step(self, params: dict, m: jax.Array, x_t: jax.Array) -> jax.Array:
    """One RNN update: (B, Z), (B,) -> (B, Z)."""
    return self.updater.apply({"params": params["updater"]}, m, x_t)

  def empty_memory(self, params: dict, batch_size: int) -> jax.Array:
    """m_empty, the memory of the empty past: the encoder applied to an all-padding window,
    (B, Z). SMT trains f(m_empty, x_0) ~ m_0, so an SMT / DMT RNN reads a sequence from here
    with no encoder (the memory "at position -1"; a constant, so encoded once and broadcast rather
    than once per row: the streaming encoder's attention per row grows with B times the window)."""
    m = self.encode(params, jnp.full((1, self.encoder_window), -1, jnp.int32))
    return jnp.broadcast_to(m, (batch_size, *m.shape[1:]))

  def initial_memory(self, params: dict, batch_size: int) -> jax.Array:
    """The updater's own memory before any token (zeros, or learned with
    model.rnn.learned_init): where BPTT starts. (B, Z)."""
    return self.updater.apply(
      {"params": params["updater"]}, batch_size, method=Updater.initial_memory
    )

  def read(self, params: dict, m: jax.Array) -> jax.Array:
    """Readout logits of memories (B, Z) -> (B, V), float32."""
    return self.readout.apply({"params": params["readout"]}, m)

  def lm_logits(self, params: dict, x: jax.Array) -> jax.Array:
    """The decoder as a plain causal Transformer LM (method "lm"): tokens (B, T) -> float32
    logits (B, T, V), position t attending to x[0..t] and predicting y[t] = x[t+1].

    The decoder reads K all-zero memory tokens (a constant start, no encoder) before x, so its
    logits after x[t] are `decode`'s output t + 1; its token embedding must be its own
    (model.teacher.shared_embed = False).
    """
    m = jnp.zeros((x.shape[0], self.updater.mem_size), jnp.float32)
    return self.decode(params, m, x)[:, 1:]


def mem_size(cfg: ml_collections.ConfigDict) -> int:
  """Z = K * d, the size of a flattened memory state."""
  return cfg.model.mem_tokens * cfg.model.d_model


def param_counts(params: dict) -> dict[str, int]:
  """Number of parameters (scalars) in each group of `params` (arrays or ShapeDtypeStructs)."""
  return {g: sum(math.prod(a.shape) for a in jax.tree.leaves(t)) for g, t in params.items()}


def readout_from_decoder(params: dict) -> dict:
  """params with the readout replaced by a copy of the teacher decoder (Readout = {"decoder"});
  a copy, not an alias, so the two groups can be donated and trained separately."""
  return {**params, "readout": {"decoder": jax.tree.map(jnp.copy, params["decoder"])}}


def build_models(cfg: ml_collections.ConfigDict) -> Models:
  """The modules described by `cfg.model` (vocabulary from `cfg.data.vocab_size`)."""
  m, t, r = cfg.model, cfg.model.teacher, cfg.model.rnn
  dtype = jnp.dtype(m.dtype)
  shared = dict(vocab_size=cfg.data.vocab_size, mem_tokens=m.mem_tokens, dtype=dtype)
  block = BlockOptions(
    head_dim=m.head_dim,
    rotary_fraction=m.rotary_fraction,
    exact_gelu=m.exact_gelu,
    norm_eps=m.norm_eps,
  )
  transformer = dict(d_model=m.d_model, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio, **shared)
  encoder_args = dict(
    depth=t.encoder_depth,
    fsq_levels=m.fsq_levels,
    register_std=t.register_std,
    remat=t.remat_blocks,
    block=block,
    **transformer,
  )
  if t.encoder == "stream":
    encoder = StreamEncoder(window=t.Tc, chunk=t.stream_chunk, **encoder_args)
  elif t.encoder == "window":
    encoder = Encoder(**encoder_args)
  else:
    raise ValueError(f"model.teacher.encoder={t.encoder!r} is unknown; use one of {ENCODER_NAMES}.")
  return Models(
    encoder=encoder,
    decoder=Decoder(depth=t.decoder_depth, shared_embed=t.shared_embed, block=block, **transformer),
    updater=Updater(
      kind=r.updater,
      mem_size=mem_size(cfg),
      depth=r.depth,
      num_heads=m.num_heads,
      hidden=r.hidden,
      mlp_ratio=m.mlp_ratio,
      fsq_levels=m.fsq_levels,
      learned_init=r.learned_init,
      block=block,
      **shared,
    ),
    readout=Readout(depth=r.readout_depth, shared_embed=t.shared_embed, block=block, **transformer),
    encoder_window=t.Tc,
    buckets=t.buckets,
  )


def init_params(cfg: ml_collections.ConfigDict, rng: jax.Array) -> dict:
  """Fresh parameters for the models of `cfg`."""
  return build_models(cfg).init(rng, cfg.model.teacher.Tf - 1)


__all__ = [
  "BlockOptions",
  "Models",
  "build_models",
  "init_params",
  "mem_size",
  "param_counts",
  "readout_from_decoder",
  "GROUPS",
  "TEACHER_GROUPS",
  "RNN_GROUPS",
  "UPDATER_NAMES",
  "ENCODER_NAMES",
  "Encoder",
  "StreamEncoder",
  "Decoder",
  "Readout",
  "Updater",
]
