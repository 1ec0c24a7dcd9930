"""The one table of what differs between SMT, DMT and BPTT, and the rules read from it.

Everything method-specific outside the objectives themselves (which groups train by default,
whether the run has a teacher to evaluate, where the RNN read starts, whether the RNN reads
through a copy of the teacher decoder) is looked up here, so that a new method is one row.
"""

import dataclasses
from collections.abc import Callable

import ml_collections

from smt_jax.objectives.bptt import bptt_loss
from smt_jax.objectives.dmt import dmt_loss
from smt_jax.objectives.smt import smt_loss


@dataclasses.dataclass(frozen=True)
class Method:
  """One training method's rules.

  loss: `(params, batch, rng, cfg) -> (loss, metrics)`.
  trainable: parameter groups trained unless train.trainable says otherwise.
  has_teacher: the run trains or keeps an encoder and decoder, so evaluation reports the teacher
    and the rollout drift from its memories.
  read_prefix: where the RNN read starts unless eval.prefix says otherwise: 0 = the RNN's
    initial memory, p >= 1 = the encoder's memory of x[0..p-1].
  readout_untrained: the run never trains the readout, so with model.rnn.readout_from_decoder
    the RNN is read through a copy of the decoder (what DMT then starts from).
  """

  loss: Callable
  trainable: tuple[str, ...]
  has_teacher: bool
  read_prefix: int
  readout_untrained: bool


METHODS = {
  "smt": Method(
    smt_loss,
    ("encoder", "decoder", "updater"),
    has_teacher=True,
    read_prefix=1,
    readout_untrained=True,
  ),
  "dmt": Method(
    dmt_loss, ("updater", "readout"), has_teacher=True, read_prefix=1, readout_untrained=False
  ),
  "bptt": Method(
    bptt_loss, ("updater", "readout"), has_teacher=False, read_prefix=0, readout_untrained=False
  ),
}


def method_of(cfg: ml_collections.ConfigDict) -> Method:
  """The row of cfg.method; ValueError naming the choices when it is unknown."""
  if cfg.method not in METHODS:
    raise ValueError(f"method={cfg.method!r} is unknown; use one of {tuple(METHODS)}.")
  return METHODS[cfg.method]


def trainable_groups(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The parameter groups this run trains: cfg.train.trainable, or the method's default."""
  return tuple(cfg.train.trainable) or method_of(cfg).trainable


def read_prefix(cfg: ml_collections.ConfigDict) -> int:
  """Where the RNN read starts (see `Method.read_prefix`): cfg.eval.prefix, or the method's when
  it is -1. A method without a teacher always reads from the RNN's initial memory (0)."""
  method = method_of(cfg)
  if not method.has_teacher:
    return 0
  return cfg.eval.prefix if cfg.eval.prefix >= 0 else method.read_prefix


def reads_through_decoder(cfg: ml_collections.ConfigDict) -> bool:
  """Whether this run's RNN is read through a copy of the teacher decoder."""
  return method_of(cfg).readout_untrained and cfg.model.rnn.readout_from_decoder
