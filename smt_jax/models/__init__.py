"""Flax modules of smt_jax and `Models`, the bundle of pure functions the objectives call.

Parameters are a dict of four groups, each a Flax "params" tree:
  {"encoder": ..., "decoder": ...}   the teacher
  {"updater": ..., "readout": ...}   the RNN
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from smt_jax.models.teacher import Decoder, Encoder, Readout
from smt_jax.models.transformer import BlockOptions
from smt_jax.models.updaters import UPDATER_NAMES, Updater

GROUPS = ("encoder", "decoder", "updater", "readout")
TEACHER_GROUPS = ("encoder", "decoder")
RNN_GROUPS = ("updater", "readout")


@dataclasses.dataclass(frozen=True)
class Models:
  """The teacher and RNN modules, with pure apply functions over the grouped parameters."""

  encoder: Encoder
  decoder: Decoder
  updater: Updater
  readout: Readout
  encoder_window: int  # Tc, the length of the encoder's context window.

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
    """(B, Tc) tokens, -1 = padding -> memory (B, Z)."""
    return self.encoder.apply({"params": params["encoder"]}, x_window)

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
    with no encoder (the memory "at position -1"; a constant, computable once)."""
    return self.encode(params, jnp.full((batch_size, self.encoder_window), -1, jnp.int32))

  def initial_memory(self, params: dict, batch_size: int) -> jax.Array:
    """The updater's own memory before any token (zeros, or learned with
    model.rnn.learned_init): where BPTT starts. (B, Z)."""
    return self.updater.apply(
      {"params": params["updater"]}, batch_size, method=Updater.initial_memory
    )

  def read(self, params: dict, m: jax.Array) -> jax.Array:
    """Readout logits of memories (B, Z) -> (B, V), float32."""
    return self.readout.apply({"params": params["readout"]}, m)


def mem_size(cfg: ml_collections.ConfigDict) -> int:
  """Z = K * d, the size of a flattened memory state."""
  return cfg.model.mem_tokens * cfg.model.d_model


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
  transformer = dict(
    d_model=m.d_model, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio, block=block, **shared
  )
  return Models(
    encoder=Encoder(
      depth=t.encoder_depth, fsq_levels=m.fsq_levels, register_std=t.register_std, **transformer
    ),
    decoder=Decoder(depth=t.decoder_depth, shared_embed=t.shared_embed, **transformer),
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
    readout=Readout(depth=r.readout_depth, shared_embed=t.shared_embed, **transformer),
    encoder_window=t.Tc,
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
  "readout_from_decoder",
  "GROUPS",
  "TEACHER_GROUPS",
  "RNN_GROUPS",
  "UPDATER_NAMES",
  "Encoder",
  "Decoder",
  "Readout",
  "Updater",
]
