"""Measures of a finished run's workdir that the studies tabulate: how much of the memory space
the encoder's and the RNN's memories use, where along a sequence the RNN loses what the
encoder's memory holds, (retrieval) whether the RNN writes the needle at all, and the 95 %
interval of a read accuracy."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smt_jax.checkpointing import load_params
from smt_jax.data import make_dataset
from smt_jax.data.synthetic import has_answer_sources
from smt_jax.errors import ConfigError
from smt_jax.eval.config import final_eval_batches
from smt_jax.eval.probe import ridge_probe
from smt_jax.eval.read import (
  add_stats,
  memories_from,
  read_logits_from,
  read_stats_from,
  rnn_memories,
  summarize,
  teacher_read_logits,
)
from smt_jax.models import build_models, readout_from_decoder
from smt_jax.objectives import method_of, read_start, reads_through_decoder
from smt_jax.objectives.windows import encoder_memories, futures, over_time

Z_95 = 1.959963984540054  # The standard normal's 97.5 % quantile: a two-sided 95 % interval.


def wilson_interval(hits: int, n: int, z: float = Z_95) -> tuple[float, float]:
  """Wilson score interval of a proportion hits / n: (lo, hi) in [0, 1]; (nan, nan) when n = 0.

  Unlike the normal approximation p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and does not
  collapse to a point at 0 / n or n / n, which are the accuracies a solved task reads.
  """
  if n <= 0:
    return math.nan, math.nan
  p, z2 = hits / n, z * z
  center = (p + z2 / (2 * n)) / (1 + z2 / n)
  half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
  return max(0.0, center - half), min(1.0, center + half)


def mean_interval(values, z: float = Z_95) -> tuple[float, tuple[float, float]]:
  """(mean, (lo, hi)) of independent per-sequence values [N] (e.g. each image's bits per pixel):
  the normal interval mean +- z * sd / sqrt(N), with the sample standard deviation (ddof 1);
  (nan, nan) below two values."""
  v = np.asarray(values, np.float64)
  mean = float(v.mean()) if v.size else math.nan
  if v.size < 2:
    return mean, (math.nan, math.nan)
  half = z * float(v.std(ddof=1)) / math.sqrt(v.size)
  return mean, (mean - half, mean + half)


def read_interval(summary: dict, num_sequences: int) -> dict:
  """The 95 % interval of a read accuracy (`smt_jax.eval.read.summarize`'s summary, from
  `num_sequences` sequences): {"acc_interval": [lo, hi], "num_labels", "num_sequences"}.

  The interval is Wilson's over the scored labels, each counted as an independent trial. With
  one label per sequence (retrieval) these are the sequences; with several labels per sequence
  they are not independent and the interval is narrower than the truth.
  """
  lo, hi = wilson_interval(summary["num_hits"], summary["num_labels"])
  return {
    "acc_interval": [lo, hi],
    "num_labels": summary["num_labels"],
    "num_sequences": num_sequences,
  }


def rnn_alone(cfg: ml_collections.ConfigDict, params: dict) -> tuple[dict, jax.Array]:
  """(params, m_start (Z,)) of a run's trained RNN as the read from x[0] uses it: the updater
  and readout groups (the readout a copy of the decoder where `reads_through_decoder`), and the
  memory it starts from (m_empty for a method with a teacher, else the updater's initial
  memory). What `x0_read` needs, so an RNN stored without its teacher can be measured alike."""
  models = build_models(cfg)
  full = readout_from_decoder(params) if reads_through_decoder(cfg) else params
  start = models.empty_memory if read_start(cfg) == 0 else models.initial_memory
  return {g: full[g] for g in ("updater", "readout")}, start(full, 1)[0]


def x0_read(
  cfg: ml_collections.ConfigDict,
  rnn: dict,
  m_start: jax.Array,
  num_sequences: int,
  seed: int,
  batch_size: int,
) -> dict:
  """The teacher-forced read of an RNN (`rnn_alone`) from m_start over x[0 ..] on
  ceil(num_sequences / batch_size) batches of the test split (`final_eval_batches(seed, "read")`,
  of length eval.T or data.T), as the final evaluation's "read" section draws them: with the
  run's eval.seed and batch sizes it reads the same sequences.

  Returns {"loss", "acc", "acc_interval", "num_labels", "num_sequences", "num_hits", "T",
  "seed"}.
  """
  models, length = build_models(cfg), cfg.eval.T or cfg.data.T
  num = -(-num_sequences // batch_size)
  stats_of = jax.jit(
    lambda b: read_stats_from(
      models, rnn, jnp.broadcast_to(m_start, (batch_size, *m_start.shape)), b
    )
  )
  total = None
  for batch in final_eval_batches(
    make_dataset(cfg.data, "test"), seed, "read", length, num, batch_size
  ):
    total = add_stats(total, stats_of(batch))
  summary = summarize(total)
  return {
    "loss": summary["loss"],
    "acc": summary["acc"],
    "num_hits": summary["num_hits"],
    **read_interval(summary, num * batch_size),
    "T": length,
    "seed": seed,
  }


def lag_edges(T: int) -> list:
  """Lag buckets [1, 2), [2, 4), ... [T / 2, T): every lag a length-T sequence can have."""
  edges = [1]
  while edges[-1] < T:
    edges.append(min(2 * edges[-1], T))
  return edges


def read_by_lag(cfg: ml_collections.ConfigDict, params: dict, edges) -> dict:
  """Accuracy by how far back each answer's information entered: the read from x[0] of the model
  `params` of a run of `cfg` (its RNN, and its teacher where it has one) on the final
  evaluation's read sequences (eval.seed, eval.batch_size x eval.num_batches), over the answers
  whose lag t - source (the task's `answer_sources`) lies in [edges[i], edges[i + 1]).

  Returns {"edges", "count": per bucket, "rnn_acc", "teacher_acc" (None without a teacher); an
  accuracy is None in a bucket without answers}.
  """
  if not has_answer_sources(cfg.data.name):
    raise ConfigError(
      f"data.name={cfg.data.name!r}: accuracy by lag needs a synthetic task whose answers "
      "repeat one input token (smt_jax.data.synthetic.has_answer_sources: copy, stack, "
      "keys_values)."
    )
  task = make_dataset(cfg.data, "test")
  models, length = build_models(cfg), cfg.eval.T or cfg.data.T
  rnn, m_start = rnn_alone(cfg, params)
  with_teacher = method_of(cfg).has_teacher
  bounds = jnp.asarray(edges)

  def counts(batch):
    x, y = batch["x"], batch["y"]
    source = jax.vmap(task.answer_sources)(x, y)
    lag = jnp.arange(x.shape[1]) - source
    bucket = jnp.searchsorted(bounds, lag, side="right") - 1
    inside = (source >= 0) & (lag >= bounds[0]) & (lag < bounds[-1])
    member = jax.nn.one_hot(jnp.where(inside, bucket, -1), len(edges) - 1)  # (B, T, buckets)
    logits = {
      "rnn": read_logits_from(
        models, rnn, jnp.broadcast_to(m_start, (x.shape[0],) + m_start.shape), x
      )
    }
    if with_teacher:
      logits["teacher"] = teacher_read_logits(models, params, x)
    out = {"count": member.sum((0, 1))}
    for role, lg in logits.items():
      out[role] = (member * (jnp.argmax(lg, -1) == y)[..., None]).sum((0, 1))
    return out

  counts = jax.jit(counts)
  batches = final_eval_batches(
    task, cfg.eval.seed, "read", length, cfg.eval.num_batches, cfg.eval.batch_size
  )
  total = jax.tree.map(lambda *c: sum(c), *[counts(b) for b in batches])
  n = np.asarray(total["count"])
  ratio = lambda role: [
    None if c == 0 else float(h / c) for h, c in zip(np.asarray(total[role]), n)
  ]
  return {
    "edges": [int(e) for e in edges],
    "count": n.astype(int).tolist(),
    "rnn_acc": ratio("rnn"),
    "teacher_acc": ratio("teacher") if with_teacher else None,
  }


PROBE_SETS = (("train", 512), ("val", 256), ("test", 512))  # Fit, choose the penalty, score.
PROBE_SLOTS = 4  # The stack slots probed, from the top.


def state_probe(cfg: ml_collections.ConfigDict, params: dict, edges) -> dict:
  """How much of the stack each memory holds: per slot j < min(PROBE_SLOTS, depth) from the top,
  a linear probe (`probe.ridge_probe`) from the memory after x[0 .. t] to the symbol in slot j,
  fitted, chosen and scored on the sequences of PROBE_SETS (their splits, drawn with eval.seed's
  "state" key), over the memories of every position where the slot holds a symbol; scored per
  bucket [edges[i], edges[i + 1]) of the slot's age + 1 (its lag were it popped next). Roles:
  the RNN read from x[0] and, with a teacher, its encoder (the memories SMT's targets are).

  Returns {"slots", "edges", "count": (slots, buckets) scored memories, "rnn_acc",
  "teacher_acc" (None without a teacher): (slots, buckets) accuracies, None in an empty bucket;
  "penalty": {role: per slot}}.
  """
  if cfg.data.name != "stack":
    raise ConfigError(
      f"data.name={cfg.data.name!r}: the state probe reads the stack's slots; it needs "
      "data.name='stack'."
    )
  models, length = build_models(cfg), cfg.eval.T or cfg.data.T
  rnn, m_start = rnn_alone(cfg, params)
  starts = lambda x: jnp.broadcast_to(m_start, (len(x), *m_start.shape))
  roles = {"rnn": jax.jit(lambda x: memories_from(models, rnn, starts(x), x)[0])}
  if method_of(cfg).has_teacher:
    t = lambda x: jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape)
    roles["teacher"] = jax.jit(lambda x: encoder_memories(models, params, x, t(x)))
  sets = []
  for split, num in PROBE_SETS:
    task = make_dataset(cfg.data, split)
    x = next(final_eval_batches(task, cfg.eval.seed, "state", length, 1, num))["x"]
    symbols, ages = (np.asarray(a) for a in jax.vmap(task.stack_slots)(x))
    memories = {role: np.asarray(f(x)).reshape(num, length, -1) for role, f in roles.items()}
    sets.append((memories, symbols, ages))
  num_symbols, slots = task.n_symbols, min(PROBE_SLOTS, task.depth)
  bucket_of = lambda age: np.searchsorted(np.asarray(edges), age + 1, side="right") - 1
  out = {"slots": list(range(slots)), "edges": [int(e) for e in edges], "penalty": {}}
  count = np.zeros((slots, len(edges) - 1), int)
  for role in roles:
    acc, out["penalty"][role] = [], []
    for j in range(slots):
      held = [symbols[..., j] >= 0 for _, symbols, _ in sets]
      fit, choose, score = (
        (memories[role][h], symbols[..., j][h]) for (memories, symbols, _), h in zip(sets, held)
      )
      hits, penalty = ridge_probe(fit, choose, score, num_symbols)
      bucket = bucket_of(sets[-1][2][..., j][held[-1]])
      inside = (bucket >= 0) & (bucket < len(edges) - 1)
      count[j] = np.bincount(bucket[inside], minlength=len(edges) - 1)
      right = np.bincount(bucket[inside], weights=hits[inside], minlength=len(edges) - 1)
      acc.append([None if c == 0 else float(r / c) for r, c in zip(right, count[j])])
      out["penalty"][role].append(penalty)
    out[f"{role}_acc"] = acc
  out.setdefault("teacher_acc", None)
  out["count"] = count.tolist()
  return out


def carry_lengths(T: int) -> list:
  """The carries the "carry" section reads: 0 and 1, 2, 4, .. up to T."""
  return [0] + lag_edges(T)


def carried_reads(cfg: ml_collections.ConfigDict, params: dict, carries) -> dict:
  """How many updates the RNN keeps what the encoder's memory holds (a method with a teacher).

  For each k in `carries`, every position t >= k - 1 of the final evaluation's read sequences
  (as `read_by_lag` draws them) starts from the encoder's memory m_{t-k} (m_empty at t - k = -1),
  lets the updater read x[t-k+1 .. t] and reads y[t] with the RNN's readout (`rnn_alone`).
  k = 0 is that readout on the encoder's own m_t; at t = k - 1 it is the read from x[0]. Where
  the accuracy falls between two k, the updater loses within that many updates what the
  encoder's memory held; where it stays, the memory the readout needs survives the rollout.

  Returns {"carries", "count" (labels read per k), "acc" (None without labels), "distance" (per
  k: the mean squared distance per float of the carried m_t from the encoder's, over t),
  "signal" (the distances' scale: the variance per float of the encoder's m_t across sequences
  at the same t, averaged over t and floats; a carried memory this far off tells sequences apart
  no better than their mean memory)}.
  """
  models, length = build_models(cfg), cfg.eval.T or cfg.data.T
  rnn, _ = rnn_alone(cfg, params)
  step = over_time(lambda m, xt: models.step(rnn, m, xt))
  read = over_time(lambda m: models.read(rnn, m))

  def encode(x):  # (B, T + 1, Z): the encoder's memories at positions -1 .. T - 1.
    return encoder_memories(
      models, params, x, jnp.broadcast_to(jnp.arange(-1, x.shape[1]), (x.shape[0], x.shape[1] + 1))
    )

  def counts(enc, x, y, k: int):
    n = x.shape[1] + 1 - k  # Starts at -1 .. T - 1 - k; after k updates at k - 1 .. T - 1.
    m = enc[:, :n]
    if k:
      inputs = jnp.stack([x[:, j : j + n] for j in range(k)])  # (k, B, n): update j reads these
      m = jax.lax.scan(lambda m, xt: (step(m, xt), None), m, inputs)[0]
    first = max(k - 1, 0)  # Position -1 (k = 0) has no label.
    m, target, labels = m[:, first - k + 1 :], enc[:, first + 1 :], y[:, first:]
    hits = (jnp.argmax(read(m), -1) == labels) & (labels >= 0)
    return {
      "hits": hits.sum(),
      "count": (labels >= 0).sum(),
      "squares": jnp.mean(jnp.square(m - target), axis=2).mean(1).sum(),
    }

  def moments(enc):  # Per (t, float): sums over the sequences of m_t and m_t ** 2 (t >= 0).
    return {"sum": enc[:, 1:].sum(0), "squares": jnp.square(enc[:, 1:]).sum(0)}

  encode, counts, moments = jax.jit(encode), jax.jit(counts, static_argnums=3), jax.jit(moments)
  carries = [int(k) for k in carries]
  add = lambda a, b: b if a is None else jax.tree.map(jnp.add, a, b)
  totals, spread, rows = dict.fromkeys(carries), None, 0
  for batch in final_eval_batches(
    make_dataset(cfg.data, "test"),
    cfg.eval.seed,
    "read",
    length,
    cfg.eval.num_batches,
    cfg.eval.batch_size,
  ):
    x, y = batch["x"], batch["y"]
    enc = encode(x)  # Once per batch, shared by every k.
    spread, rows = add(spread, moments(enc)), rows + x.shape[0]
    for k in carries:
      totals[k] = add(totals[k], counts(enc, x, y, k))
  mean = spread["sum"] / rows
  out = {
    "carries": carries,
    "count": [int(totals[k]["count"]) for k in carries],
    "signal": float(jnp.mean(spread["squares"] / rows - jnp.square(mean))),
  }
  out["acc"] = [float(totals[k]["hits"] / n) if n else None for k, n in zip(carries, out["count"])]
  out["distance"] = [float(totals[k]["squares"] / rows) for k in carries]
  return out


def format_acc(acc: float | None, interval=None) -> str:
  """An accuracy as "0.975 [0.962, 0.984]" (with its interval) or "0.975"; "-" for None."""
  if acc is None:
    return "-"
  if interval is None or interval[0] is None or math.isnan(interval[0]):
    return f"{acc:.3f}"
  return f"{acc:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


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
  """`answer_trace` of each sequence's last label only (retrieval: the needle, asked at the
  end)."""
  return answer_trace(cfg, workdir, num, last_only=True)


def answer_trace(
  cfg: ml_collections.ConfigDict, workdir: str, num: int = 256, last_only: bool = False
) -> dict:
  """`trace_answers` of the run in `workdir` on `num` test sequences (of its last labels only
  when `last_only`), as lists: {"t": [0 .. T - 1], "enc_acc", "rnn_acc" (None where no answer
  is within reach), "drift"}."""
  params, _ = load_params(workdir)
  batch = make_dataset(cfg.data, "test").sample(jax.random.key(4321), num, cfg.data.T)
  if last_only:
    batch = {**batch, "y": last_label_only(batch["y"])}
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


def last_label_only(y: jax.Array) -> jax.Array:
  """y (B, T) with every label but each row's last set to -1."""
  t = jnp.arange(y.shape[1])
  last = jnp.max(jnp.where(y >= 0, t, -1), axis=1, keepdims=True)
  return jnp.where(t == last, y, -1)


def trace_in_chunks(cfg: ml_collections.ConfigDict, params: dict, batch: dict, chunk: int):
  """`trace_answers` of the whole batch, computed `chunk` sequences at a time (jitted once per
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
  """`trace_answers` of each sequence's last label only (e.g. retrieval, whose one label is the
  needle, asked at the end)."""
  return trace_answers(cfg, params, {**batch, "y": last_label_only(batch["y"])})


def trace_answers(cfg: ml_collections.ConfigDict, params: dict, batch: dict):
  """Where along a sequence the information for its answers is held or lost (a method with a
  teacher; any task: the answers are the labelled positions, y >= 0).

  For each memory position t, the teacher decoder predicts every answer y[j] with
  0 <= j - t < Tf from m_t, reading the true inputs x[t+1 .. j], once from the encoder's m_t and
  once from the RNN's m_t (after reading x[0 .. t] from its read start). Where an answer's
  information arrives after t, the decoder can still find it in those inputs: there the numbers
  measure the decoder; where it lies in x[0 .. t], they measure the memory.

  Args: batch {"x", "y"} (B, T). Returns (enc_acc (T,), rnn_acc (T,), drift (T,)): accuracies
  over the answers within reach of t in all sequences (NaN where none is), and the mean squared
  distance between the RNN's and the encoder's m_t.
  """
  return _trace_ratios(*_trace_counts(cfg, params, batch), batch["x"].shape[0])


def _trace_ratios(enc_hits, rnn_hits, reach, squares, num: int):
  """(enc_acc, rnn_acc, drift) from the sums of `_trace_counts` over `num` sequences."""
  per_reach = jnp.where(reach > 0, reach, jnp.nan)
  return enc_hits / per_reach, rnn_hits / per_reach, squares / num


def _trace_counts(cfg: ml_collections.ConfigDict, params: dict, batch: dict):
  """Per position t (T,): the encoder's and the RNN's hits on the answers within reach of t,
  the number of those answers, and the summed mean squared distance of the memories."""
  models = build_models(cfg)
  x, y = batch["x"], batch["y"]
  T, tf = x.shape[1], cfg.model.teacher.Tf
  t = jnp.broadcast_to(jnp.arange(T), x.shape)
  inputs, targets = futures(x, y, t, tf)  # targets (B, T, Tf): y[t + k], -1 = no answer
  reach = targets >= 0

  def hits(m):  # (B, T, Z) -> (T,)
    logits = over_time(lambda mt, xf: models.decode(params, mt, xf))(m, inputs)  # (B, T, Tf, V)
    return ((jnp.argmax(logits, -1) == targets) & reach).sum((0, 2))

  enc = encoder_memories(models, params, x, t)
  rnn = rnn_memories(models, params, x, read_start(cfg))
  squares = jnp.sum(jnp.mean(jnp.square(rnn - enc), axis=2), axis=0)
  return hits(enc), hits(rnn), reach.sum((0, 2)), squares


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
