"""Measures of a finished run's workdir that the studies tabulate: how much of the memory space
the encoder's and the RNN's memories use."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smt_jax.checkpointing import load_params
from smt_jax.data import make_dataset
from smt_jax.eval.read import rnn_memories
from smt_jax.models import build_models
from smt_jax.objectives import method_of, read_start
from smt_jax.objectives.windows import encoder_memories


def spread_stats(m: np.ndarray) -> dict:
  """How spread memories m (B, T, Z) are: participation ratio of the covariance spectrum over
  all B * T memories ("eff_dim": 1 = collapsed onto a line, Z = isotropic), mean per-feature
  standard deviation, and mean cosine similarity between the memories of different sequences at
  the same position ("cross_cos": 1 = every sequence has the same memory)."""
  m = np.asarray(m, np.float64)
  num = m.shape[0]
  flat = m.reshape(-1, m.shape[-1])
  eig = np.clip(np.linalg.eigvalsh(np.cov(flat.T)), 0, None)
  ratio = float(eig.sum() ** 2 / max((eig**2).sum(), 1e-30))
  unit = m / (np.linalg.norm(m, axis=-1, keepdims=True) + 1e-8)
  cos = np.einsum("btz,ctz->tbc", unit, unit)
  off = (cos.sum(axis=(1, 2)) - np.trace(cos, axis1=1, axis2=2)) / (num * (num - 1))
  return {
    "eff_dim": ratio,
    "feature_std": float(flat.std(0).mean()),
    "cross_cos": float(off.mean()),
  }


def memory_spread(cfg: ml_collections.ConfigDict, workdir: str, num: int = 64) -> dict:
  """`spread_stats` of the encoder's memories (the Tc-windows at every position; methods with a
  teacher) and of the RNN's (read from x[0]) on `num` test sequences."""
  params, _ = load_params(workdir)
  models = build_models(cfg)
  x = make_dataset(cfg.data, "test").sample(jax.random.key(1234), num, cfg.data.T)["x"]
  out = {}
  if method_of(cfg).has_teacher:
    t = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape)
    out["encoder"] = spread_stats(jax.jit(lambda p: encoder_memories(models, p, x, t))(params))
  start = read_start(cfg)
  out["rnn"] = spread_stats(jax.jit(lambda p: rnn_memories(models, p, x, start))(params))
  return out
