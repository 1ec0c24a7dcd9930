"""Training objectives, each `(params, batch, rng, cfg) -> (loss, metrics)` and jit-able, and
the table of per-method rules (`METHODS`)."""

from smt_jax.objectives.bptt import bptt_loss
from smt_jax.objectives.dmt import dmt_loss
from smt_jax.objectives.lm import lm_loss
from smt_jax.objectives.methods import (
  METHODS,
  Method,
  encoder_prefix,
  gradient_path_length,
  method_of,
  read_groups,
  read_start,
  reads_through_decoder,
  trainable_groups,
)
from smt_jax.objectives.smt import smt_loss

__all__ = [
  "METHODS",
  "Method",
  "method_of",
  "encoder_prefix",
  "gradient_path_length",
  "read_groups",
  "read_start",
  "reads_through_decoder",
  "trainable_groups",
  "smt_loss",
  "dmt_loss",
  "bptt_loss",
  "lm_loss",
]
