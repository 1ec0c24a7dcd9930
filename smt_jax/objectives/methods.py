"""The one table of what differs between SMT, DMT, BPTT and the Transformer LM baseline, and the
rules read from it.

Everything method-specific outside the objectives themselves (which groups train by default,
whether the run has a teacher to evaluate, where the RNN read starts, whether the RNN reads
through a copy of the teacher decoder) is looked up here, so that a new method is one row.
"""

import dataclasses
from collections.abc import Callable

import ml_collections

from smt_jax.objectives import dmt
from smt_jax.objectives.bptt import bptt_loss
from smt_jax.objectives.lm import lm_loss
from smt_jax.objectives.smt import smt_loss


@dataclasses.dataclass(frozen=True)
class Method:
  """One training method's rules.

  loss: `(params, batch, rng, cfg) -> (loss, metrics)`.
  trainable: parameter groups trained unless train.trainable says otherwise.
  has_teacher: the run trains or keeps an encoder and decoder, so evaluation reports the teacher,
    the RNN read after an encoder prefix, and the rollout drift from the encoder's memories.
  read_start: the memory before x[0] that the RNN read "from x[0]" starts from (the `prefix` of
    smt_jax.eval.read.rnn_memories): 0 = m_empty, the encoder's memory of the empty past (SMT
    trains the first transition from it); None = the updater's initial memory (zeros or
    learned), for a method that trains no encoder.
  readout_untrained: the run never trains the readout, so with model.rnn.readout_from_decoder
    the RNN is read through a copy of the decoder (what DMT then starts from).
  gradient_path: `(cfg, T) -> int`, the most updater applications one gradient of the loss
    passes through on length-T sequences (`gradient_path_length`).
  recurrent: the model read from x[0] is the RNN (updater and readout); False: it is the causal
    Transformer LM of the trainable groups (`Models.lm_logits`), with no memory and no teacher.
  ignores: prefixes of config fields that neither the method's parameters at init nor its loss
    read (another method's section; the decoded future's length, where nothing is decoded), so
    that a run's staleness (experiments/repro/runner.py) and its idle rate's fingerprint
    (experiments/repro/reporting.py) do not change with them.
  """

  loss: Callable
  trainable: tuple[str, ...]
  has_teacher: bool
  read_start: int | None
  readout_untrained: bool
  gradient_path: Callable[[ml_collections.ConfigDict, int], int]
  recurrent: bool = True
  ignores: tuple[str, ...] = ()


METHODS = {
  "smt": Method(
    smt_loss,
    ("encoder", "decoder", "updater"),
    has_teacher=True,
    read_start=0,
    readout_untrained=True,
    gradient_path=lambda cfg, T: 1,  # One update from the encoder's memory.
    ignores=("dmt.", "bptt."),
  ),
  "dmt": Method(
    dmt.dmt_loss,
    ("updater", "readout"),
    has_teacher=True,
    read_start=0,
    readout_untrained=False,
    gradient_path=dmt.gradient_path_length,  # The rollout's updates, at most dmt.grad_steps.
    ignores=("bptt.",),
  ),
  "bptt": Method(
    bptt_loss,
    ("updater", "readout"),
    has_teacher=False,
    read_start=None,
    readout_untrained=False,
    gradient_path=lambda cfg, T: T,  # The last label's loss reaches back through all T updates.
    ignores=("model.teacher.Tf", "smt.", "dmt."),
  ),
  "lm": Method(
    lm_loss,
    ("decoder",),
    has_teacher=False,
    read_start=None,
    readout_untrained=False,
    gradient_path=lambda cfg, T: 0,  # No updater: attention links every pair of tokens directly.
    recurrent=False,
    ignores=("model.teacher.Tf", "smt.", "dmt.", "bptt."),
  ),
}


def method_of(cfg: ml_collections.ConfigDict) -> Method:
  """The row of cfg.method; ValueError naming the choices when it is unknown."""
  if cfg.method not in METHODS:
    raise ValueError(f"method={cfg.method!r} is unknown; use one of {tuple(METHODS)}.")
  return METHODS[cfg.method]


def gradient_path_length(cfg: ml_collections.ConfigDict, length: int) -> int:
  """The most updater applications one gradient of cfg.method's loss passes through on
  sequences of `length` tokens: SMT 1, BPTT `length`, DMT its rollout's updates (Td; from m_empty
  with Td = 0, `length`), at most dmt.grad_steps (1 with the per-step stop-gradient); the LM,
  with no updater, 0."""
  return method_of(cfg).gradient_path(cfg, length)


def trainable_groups(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The parameter groups this run trains: cfg.train.trainable, or the method's default.

  DMT rollouts that start at m_empty (dmt.start = -1) or at random positions begin before the
  information a label needs, and a trainable readout then learns to ignore the memory: there
  DMT trains the updater alone unless train.trainable says otherwise.
  """
  if cfg.train.trainable:
    return tuple(cfg.train.trainable)
  if cfg.method == "dmt" and (cfg.dmt.random_start or cfg.dmt.start < 0):
    return ("updater",)
  return method_of(cfg).trainable


def read_start(cfg: ml_collections.ConfigDict) -> int | None:
  """Where this run's RNN read "from x[0]" starts (see Method.read_start): BPTT with
  bptt.start = "empty" starts, and is read, from m_empty."""
  if cfg.method == "bptt" and cfg.bptt.start == "empty":
    return 0
  return method_of(cfg).read_start


def encoder_prefix(cfg: ml_collections.ConfigDict) -> int:
  """P of the extra read after an encoder prefix (methods with a teacher) and of the samples'
  prompts: eval.prefix, or with -1 Tc (T // 2 when Tc >= T)."""
  if cfg.eval.prefix != -1:
    return cfg.eval.prefix
  T, tc = cfg.data.T, cfg.model.teacher.Tc
  return tc if tc < T else T // 2


def reads_through_decoder(cfg: ml_collections.ConfigDict) -> bool:
  """Whether this run's RNN is read through a copy of the teacher decoder."""
  return method_of(cfg).readout_untrained and cfg.model.rnn.readout_from_decoder


def read_groups(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The parameter groups of the model read from x[0] (whose size the tables state): the RNN's
  updater and readout, or the LM's groups (Method.recurrent = False)."""
  method = method_of(cfg)
  return ("updater", "readout") if method.recurrent else method.trainable
