"""A plain causal Transformer language model: the baseline every RNN's read is compared with."""

import jax
import ml_collections

from smt_jax.models import build_models
from smt_jax.objectives import losses


def lm_loss(params: dict, batch: dict, rng: jax.Array, cfg: ml_collections.ConfigDict):
  """Next-token cross-entropy of the causal Transformer LM (`Models.lm_logits`, the decoder
  group) over the whole sequence: the logits at t attend to x[0..t] and predict y[t].

  Args and returns as `smt_loss` (rng is unused: the loss is deterministic given the batch).
  Teacher-forced over every prefix at once; the gradient path between two tokens is the
  decoder's depth.
  """
  del rng
  logits = build_models(cfg).lm_logits(params, batch["x"])  # (B, T, V)
  y = batch["y"]
  loss, num_labels = losses.masked_cross_entropy(logits, y)
  return loss, {"loss": loss, "acc": losses.masked_accuracy(logits, y), "num_labels": num_labels}
