"""Backpropagation through time: the baseline that DMT and SMT are compared with."""

import jax
import ml_collections

from smt_jax.models import build_models
from smt_jax.objectives import losses
from smt_jax.objectives.solvers import rollout_with

BPTT_STARTS = ("init", "empty")  # cfg.bptt.start: the updater's initial memory, or m_empty.


def bptt_loss(params: dict, batch: dict, rng: jax.Array, cfg: ml_collections.ConfigDict):
  """Readout cross-entropy of the RNN unrolled from its start over the whole sequence.

  m_t = f(m_{t-1}, x_t) from m_{-1} = the updater's initial memory (cfg.bptt.start = "init") or
  m_empty of the (frozen) encoder ("empty"); logits_t = g(m_t) predict y_t. Gradients flow
  through the whole `lax.scan` (optionally rematerialised with cfg.bptt.remat).

  Args and returns as `smt_loss` (rng is unused: BPTT is deterministic given the batch).
  """
  del rng
  models = build_models(cfg)
  x, y = batch["x"], batch["y"]
  start = models.empty_memory if cfg.bptt.start == "empty" else models.initial_memory
  m0 = start(params, x.shape[0])
  step, b = (lambda m, xt: models.step(params, m, xt)), cfg.bptt
  mems, solver_metrics = rollout_with(b.solver, step, m0, x.T, remat=b.remat, newton=cfg.newton)
  logits = jax.vmap(lambda m: models.read(params, m))(mems)  # (T, B, V)
  loss, num_labels = losses.masked_cross_entropy(logits, y.T)
  acc = losses.masked_accuracy(logits, y.T)
  return loss, {"loss": loss, "acc": acc, "num_labels": num_labels, **solver_metrics}
