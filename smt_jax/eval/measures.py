"""Measures of a finished run's workdir that the studies tabulate: how much of the memory space
the encoder's and the RNN's memories use, where along a sequence the RNN loses what the
encoder's memory holds, and (retrieval) whether the RNN writes the needle at all."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smt_jax.checkpointing import load_params
from smt_jax.data import make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval.read import rnn_memories
from smt_jax.models import build_models
from smt_jax.objectives import method_of, read_start
from smt_jax.objectives.windows import encoder_memories, futures, over_time


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
  sums = _summed_in_chunks(jax.jit(lambda p, b: _trace_counts(cfg, p, b)), params, batch, chunk)
  return _trace_ratios(*sums, batch["x"].shape[0])


def _summed_in_chunks(counts, params: dict, arrays: dict, chunk: int):
  """counts(params, part) summed over the parts of `arrays` (leading axis B) of `chunk` rows."""
  num = next(iter(arrays.values())).shape[0]
  parts = [
    counts(params, {k: v[i : i + chunk] for k, v in arrays.items()}) for i in range(0, num, chunk)
  ]
  return jax.tree.map(lambda *c: sum(c), *parts)


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
  hits = lambda m: _answer_hits(models, params, m, inputs, k, answer, reach)
  enc = encoder_memories(models, params, x, t)
  rnn = rnn_memories(models, params, x, read_start(cfg))
  squares = jnp.sum(jnp.mean(jnp.square(rnn - enc), axis=2), axis=0)
  return hits(enc), hits(rnn), reach.sum(0), squares


def _answer_hits(models, params, m, inputs, k, answer, reach):
  """Per memory column (n,): how many rows' last label (answer (B, 1)) the decoder predicts from
  m (B, n, Z) reading inputs (B, n, Tf - 1), at future index k (B, n), where `reach` (B, n)."""
  tf = inputs.shape[2] + 1
  logits = over_time(lambda mt, xf: models.decode(params, mt, xf))(m, inputs)  # (B, n, Tf, V)
  at_k = jnp.take_along_axis(logits, jnp.clip(k, 0, tf - 1)[:, :, None, None], axis=2)[:, :, 0]
  return ((jnp.argmax(at_k, -1) == answer) & reach).sum(0)


def needle_positions(cfg: ml_collections.ConfigDict, x: jax.Array) -> jax.Array:
  """(B,) position of each retrieval sequence's needle: the token after its first marker."""
  if cfg.data.name != "retrieval":
    raise ConfigError(
      f"data.name={cfg.data.name!r}: the needle trace reads retrieval sequences only (the needle "
      "is the token after the first marker); use a retrieval run."
    )
  mark = make_dataset(cfg.data, "test").special("mark")
  return jnp.argmax(x == mark, axis=1) + 1


def needle_trace(cfg: ml_collections.ConfigDict, workdir: str, num: int = 256) -> dict:
  """`trace_needle` of the run in `workdir` on `num` retrieval test sequences (the batch of
  `last_label_trace`), at every offset r = -(T - 1) .. T - 1 from the needle, as lists, plus
  "step_err_needle" / "step_err_elsewhere": the one-update error from the encoder's memory at
  the needle (r = 0) and over every other position."""
  params, _ = load_params(workdir)
  batch = make_dataset(cfg.data, "test").sample(jax.random.key(4321), num, cfg.data.T)
  T = cfg.data.T
  offsets = np.arange(-(T - 1), T)
  arrays = {**batch, "source": needle_positions(cfg, batch["x"])}
  count = lambda p, a: _needle_counts(cfg, p, a, a["source"], offsets)
  tokens = offsets.size * (cfg.model.teacher.Tf + cfg.model.mem_tokens)  # decoded per sequence
  sums = _summed_in_chunks(jax.jit(count), params, arrays, max(1, 2**19 // tokens))
  out = {"offset": offsets.tolist()}
  for name, value in _needle_ratios(sums).items():
    out[name] = [None if v != v else float(v) for v in np.asarray(value)]
  at = offsets == 0
  err, n = np.asarray(sums["step_err"]), np.asarray(sums["count"])
  out["step_err_needle"] = float(err[at].sum() / n[at].sum())
  out["step_err_elsewhere"] = float(err[~at].sum() / n[~at].sum())
  return out


def trace_needle(cfg, params: dict, batch: dict, source: jax.Array, offsets: np.ndarray) -> dict:
  """Whether and where an SMT / DMT RNN writes and loses a needle (the token at `source`, what
  each sequence's last label asks for): at each offset r (R,) from the needle, position
  t = source + r (B, R), the memories:

  - enc_acc, rnn_acc: the teacher decoder's accuracy on the last label from the encoder's m_t
    and from the RNN's own m_t (read from x[0]), reading the true x[t+1 ..] (as
    `trace_last_label`; for r < 0 the needle is among those inputs);
  - step_acc: the same from one update of the encoder's m_{t-1} by x[t]: at r = 0, whether the
    updater writes the needle when handed the teacher's memory;
  - drift: MSE between the RNN's and the encoder's m_t; step_err: MSE between one update of the
    encoder's m_{t-1} and the encoder's m_t (SMT's dynamics error; at r = 0 the needle's write).

  Accuracies are over the rows whose t is in [0, T) and whose last label the decoder reaches
  (NaN where none), MSEs over the rows whose t is in [0, T). Returns {name: (R,)}.
  """
  return _needle_ratios(_needle_counts(cfg, params, batch, source, offsets))


def _needle_ratios(sums: dict) -> dict:
  """The measures of `trace_needle` from the sums of `_needle_counts`."""
  per = lambda n: jnp.where(n > 0, n, jnp.nan)
  out = {name: sums[f"{name}_hits"] / per(sums["reach"]) for name in ("enc", "rnn", "step")}
  out = {f"{name}_acc": value for name, value in out.items()}
  return {**out, **{name: sums[name] / per(sums["count"]) for name in ("drift", "step_err")}}


def _needle_counts(cfg, params: dict, batch: dict, source: jax.Array, offsets: np.ndarray):
  """Per offset (R,): rows in range ("count"), rows in the decoder's reach ("reach"), the hits
  on the last label from the encoder's, the RNN's and the one-step memories, and the summed
  MSEs "drift" and "step_err" (see `trace_needle`)."""
  models = build_models(cfg)
  x, y = batch["x"], batch["y"]
  T, tf = x.shape[1], cfg.model.teacher.Tf
  t = source[:, None] + jnp.asarray(offsets)[None]  # (B, R)
  inside = (t >= 0) & (t < T)
  t = jnp.clip(t, 0, T - 1)
  last = jnp.max(jnp.where(y >= 0, jnp.arange(T), -1), axis=1)  # (B,) j; -1 = no label
  k = last[:, None] - t
  reach = inside & (last[:, None] >= 0) & (k >= 0) & (k < tf)
  answer = jnp.take_along_axis(y, jnp.maximum(last, 0)[:, None], axis=1)  # (B, 1)
  inputs, _ = futures(x, y, t, tf)
  hits = lambda m: _answer_hits(models, params, m, inputs, k, answer, reach)
  enc = encoder_memories(models, params, x, t)
  prev = encoder_memories(models, params, x, t - 1)  # t = 0: m_empty
  rnn = rnn_memories(models, params, x, read_start(cfg))  # (B, T, Z): positions 0 .. T - 1
  rnn = jnp.take_along_axis(rnn, t[:, :, None], axis=1)
  xt = jnp.take_along_axis(x, t, axis=1)
  stepped = models.step(params, prev.reshape(-1, prev.shape[2]), xt.reshape(-1))
  stepped = stepped.reshape(prev.shape)
  mse = lambda a, b: jnp.where(inside, jnp.mean(jnp.square(a - b), axis=2), 0.0).sum(0)
  return {
    "count": inside.sum(0),
    "reach": reach.sum(0),
    "enc_hits": hits(enc),
    "rnn_hits": hits(rnn),
    "step_hits": hits(stepped),
    "drift": mse(rnn, enc),
    "step_err": mse(stepped, enc),
  }
