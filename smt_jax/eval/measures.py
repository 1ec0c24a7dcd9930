"""Measures of a finished run's workdir that the studies tabulate: how much of the memory space
the encoder's and the RNN's memories use, and where along a sequence the RNN loses what the
encoder's memory holds."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smt_jax.checkpointing import load_params
from smt_jax.data import make_dataset
from smt_jax.eval.read import rnn_memories
from smt_jax.models import build_models
from smt_jax.objectives import method_of, read_start
from smt_jax.objectives.windows import encoder_memories, futures, over_time


def bits(nats):
  """Nats -> bits (nats / ln 2), elementwise for arrays; None (nothing measured) stays None.

  The losses of every language-model-like read (text, pixels, token tasks) are mean
  cross-entropies per labelled token in nats; in bits they are bits per token (per character of
  byte text, per pixel of image streams: `bits_unit`).
  """
  return None if nats is None else nats / np.log(2.0)


def bits_unit(dataset) -> str:
  """What one token of `dataset` is, for "bits per ...": pixel, character (byte text) or token."""
  kind = type(getattr(dataset, "tokenizer", None)).__name__
  return {"PixelTokenizer": "pixel", "ByteTokenizer": "character"}.get(kind, "token")


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


def last_label_trace(cfg: ml_collections.ConfigDict, workdir: str, num: int = 256) -> dict:
  """`trace_last_label` of the run in `workdir` on `num` test sequences, as lists:
  {"t": [0 .. T - 1], "enc_acc", "rnn_acc" (None where no last label is within reach), "drift"}.
  """
  params, _ = load_params(workdir)
  batch = make_dataset(cfg.data, "test").sample(jax.random.key(4321), num, cfg.data.T)
  # Decoding every memory costs B * T * (Tf + K) tokens: bound a chunk to about 2^19 of them.
  tokens = cfg.data.T * (cfg.model.teacher.Tf + cfg.model.mem_tokens)
  enc, rnn, drift = trace_in_chunks(cfg, params, batch, max(1, 2**19 // tokens))
  as_list = lambda acc: [None if a != a else float(a) for a in np.asarray(acc)]
  return {
    "t": list(range(cfg.data.T)),
    "enc_acc": as_list(enc),
    "rnn_acc": as_list(rnn),
    "drift": np.asarray(drift).tolist(),
  }


def trace_in_chunks(cfg: ml_collections.ConfigDict, params: dict, batch: dict, chunk: int):
  """`trace_last_label` of the whole batch, computed `chunk` sequences at a time (jitted once per
  chunk shape) and combined exactly: hits and counts are summed before dividing."""
  counts = jax.jit(lambda p, b: _trace_counts(cfg, p, b))
  num = batch["x"].shape[0]
  parts = [
    counts(params, {k: v[i : i + chunk] for k, v in batch.items()}) for i in range(0, num, chunk)
  ]
  enc_hits, rnn_hits, reach, squares = (sum(c) for c in zip(*parts))
  return _trace_ratios(enc_hits, rnn_hits, reach, squares, num)


def trace_last_label(cfg: ml_collections.ConfigDict, params: dict, batch: dict):
  """Where along a sequence the information for its last label is held or lost (a method with
  a teacher; e.g. retrieval, whose one label is the needle, asked at the end).

  For each memory position t, the teacher decoder predicts each sequence's last label y[j] from
  m_t, reading the true inputs x[t+1 .. j] (where 0 <= j - t < Tf), once from the encoder's m_t
  and once from the RNN's m_t (after reading x[0 .. t] from its read start). Before the
  information arrives (the needle), the decoder can still find it in those inputs: there the
  numbers measure the decoder, after it they measure the memory.

  Args: batch {"x", "y"} (B, T). Returns (enc_acc (T,), rnn_acc (T,), drift (T,)): accuracies
  over the sequences whose last label is within reach of t (NaN where none is), and the mean
  squared distance between the RNN's and the encoder's m_t.
  """
  return _trace_ratios(*_trace_counts(cfg, params, batch), batch["x"].shape[0])


def _trace_ratios(enc_hits, rnn_hits, reach, squares, num: int):
  """(enc_acc, rnn_acc, drift) from the sums of `_trace_counts` over `num` sequences."""
  per_reach = jnp.where(reach > 0, reach, jnp.nan)
  return enc_hits / per_reach, rnn_hits / per_reach, squares / num


def _trace_counts(cfg: ml_collections.ConfigDict, params: dict, batch: dict):
  """Per position t (T,): the encoder's and the RNN's hits on the last label, the sequences
  whose last label is within reach, and the summed mean squared distance of the memories."""
  models = build_models(cfg)
  x, y = batch["x"], batch["y"]
  T, tf = x.shape[1], cfg.model.teacher.Tf
  t = jnp.broadcast_to(jnp.arange(T), x.shape)
  last = jnp.max(jnp.where(y >= 0, jnp.arange(T), -1), axis=1)  # (B,) j; -1 = no label
  k = last[:, None] - t  # (B, T): index of y[j] in m_t's decoded future
  reach = (last[:, None] >= 0) & (k >= 0) & (k < tf)
  answer = jnp.take_along_axis(y, jnp.maximum(last, 0)[:, None], axis=1)  # (B, 1)
  inputs, _ = futures(x, y, t, tf)

  def hits(m):  # (B, T, Z) -> (T,)
    logits = over_time(lambda mt, xf: models.decode(params, mt, xf))(m, inputs)  # (B, T, Tf, V)
    at_k = jnp.take_along_axis(logits, jnp.clip(k, 0, tf - 1)[:, :, None, None], axis=2)[:, :, 0]
    return ((jnp.argmax(at_k, -1) == answer) & reach).sum(0)

  enc = encoder_memories(models, params, x, t)
  rnn = rnn_memories(models, params, x, read_start(cfg))
  squares = jnp.sum(jnp.mean(jnp.square(rnn - enc), axis=2), axis=0)
  return hits(enc), hits(rnn), reach.sum(0), squares
