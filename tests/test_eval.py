"""Evaluation library against independent Python-loop references (one position at a time)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_tiny_config, random_batch

from smt_jax.data import make_dataset
from smt_jax.errors import ConfigError
from smt_jax.eval import (
  drift_stats,
  resolve_eval,
  rnn_read_stats,
  rnn_step_fn,
  sample_logits,
  sample_rnn,
  summarize,
  teacher_read_stats,
  write_samples,
)
from smt_jax.eval.measures import (
  needle_positions,
  trace_in_chunks,
  trace_last_label,
  trace_needle,
)
from smt_jax.models import build_models, init_params
from smt_jax.objectives.windows import encoder_memories


class Jitted:
  """The pure functions of `Models`, each jitted once, for the Python-loop references."""

  def __init__(self, models):
    self.encoder_window = models.encoder_window
    self.encode = jax.jit(models.encode)
    self.decode = jax.jit(models.decode)
    self.step = jax.jit(models.step)
    self.read = jax.jit(models.read)
    self.initial_memory = jax.jit(models.initial_memory, static_argnums=1)


@pytest.fixture(scope="module")
def setup():
  cfg = make_tiny_config(**{"model.rnn.updater": "gru"})
  models = build_models(cfg)
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  return cfg, models, params, Jitted(models)


def window_at(x, t, tc):
  """The encoder window ending at t, left-padded with -1: (B, Tc)."""
  lo = max(t - tc + 1, 0)
  return jnp.concatenate(
    [jnp.full((x.shape[0], tc - (t + 1 - lo)), -1, x.dtype), x[:, lo : t + 1]], axis=1
  )


def reference_stats(logits_at, y, first):
  """Per-position (loss_sum, hits, count) with logits_at(t) -> (B, V), for positions >= first."""
  length = y.shape[1]
  out = np.zeros((3, length))
  for t in range(first, length):
    logp = np.asarray(jax.nn.log_softmax(logits_at(t)), np.float64)
    for b in range(y.shape[0]):
      label = int(y[b, t])
      if label >= 0:
        out[:, t] += (-logp[b, label], float(np.argmax(logp[b]) == label), 1.0)
  return out


def as_array(stats):
  return np.stack([np.asarray(stats[k]) for k in ("loss_sum", "hits", "count")])


@pytest.mark.parametrize("prefix", [None, 0, 1, 3])
def test_rnn_read_matches_python_loop(setup, prefix):
  """prefix None: from the updater's initial memory; 0: from m_empty, the encoder's memory of an
  all-padding window; p: from the encoder's memory of x[0..p-1]."""
  cfg, models, params, ref = setup
  batch = random_batch(jax.random.key(1), 3, cfg.data.T, cfg.data.vocab_size)
  x, y = batch["x"], batch["y"]
  tc = models.encoder_window
  mems = {}
  if prefix is None:
    m = ref.initial_memory(params, x.shape[0])
    first, prefix_tokens = 0, 0
  elif prefix == 0:
    m = ref.encode(params, jnp.full((x.shape[0], tc), -1, x.dtype))
    first, prefix_tokens = 0, 0
  else:
    first, prefix_tokens = prefix - 1, prefix
    m = ref.encode(params, window_at(x, first, tc))
    mems[first] = m
  for t in range(prefix_tokens, cfg.data.T):
    m = ref.step(params, m, x[:, t])
    mems[t] = m
  expected = reference_stats(lambda t: ref.read(params, mems[t]), y, first)
  got = as_array(jax.jit(lambda p, b: rnn_read_stats(models, p, b, prefix))(params, batch))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [pytest.param(0, marks=pytest.mark.integration), 3])
def test_teacher_read_matches_python_loop(setup, chunk):
  cfg, models, params, ref = setup
  batch = random_batch(jax.random.key(2), 2, cfg.data.T, cfg.data.vocab_size, label_every=1)
  empty = jnp.zeros((2, 0), jnp.int32)
  logits_at = lambda t: ref.decode(
    params, ref.encode(params, window_at(batch["x"], t, models.encoder_window)), empty
  )[:, 0]
  expected = reference_stats(logits_at, batch["y"], 0)
  got = jax.jit(lambda p, b: teacher_read_stats(models, p, b, chunk))(params, batch)
  np.testing.assert_allclose(as_array(got), expected, rtol=1e-5, atol=1e-5)


def test_summarize_pools_labels_and_marks_unlabelled_positions():
  stats = {
    "loss_sum": jnp.array([0.0, 3.0, 1.0]),
    "hits": jnp.array([0.0, 1.0, 2.0]),
    "count": jnp.array([0.0, 2.0, 2.0]),
  }
  s = summarize(stats)
  assert s["loss"] == pytest.approx(1.0) and s["acc"] == pytest.approx(0.75)
  assert s["num_labels"] == 4
  np.testing.assert_array_equal(s["loss_per_position"], [np.nan, 1.5, 0.5])
  np.testing.assert_array_equal(s["acc_per_position"], [np.nan, 0.5, 1.0])


def greedy_reference(ref, params, m, length):
  tokens = []
  for _ in range(length):
    tok = jnp.argmax(ref.read(params, m), axis=-1).astype(jnp.int32)
    m = ref.step(params, m, tok)
    tokens.append(tok)
  return np.stack(tokens, axis=1)


@pytest.mark.parametrize("temperature,top_k", [(0.0, 0), (1e-6, 0), (5.0, 1)])
def test_sampling_at_zero_temperature_or_top1_is_greedy(setup, temperature, top_k):
  cfg, models, params, ref = setup
  m0 = ref.encode(params, jax.random.randint(jax.random.key(3), (4, 4), 0, cfg.data.vocab_size))
  got = jax.jit(lambda p, m, k: sample_rnn(models, p, m, k, 6, temperature, top_k))(
    params, m0, jax.random.key(4)
  )
  np.testing.assert_array_equal(got, greedy_reference(ref, params, m0, 6))


def test_top_k_samples_only_the_k_most_likely_tokens():
  logits = jnp.tile(jnp.array([[0.0, 3.0, 1.0, 2.5, -1.0]]), (4000, 1))
  tokens = np.asarray(sample_logits(jax.random.key(0), logits, 1.0, 2))
  assert set(tokens.tolist()) == {1, 3}
  probs = jax.nn.softmax(jnp.array([3.0, 2.5]))
  assert np.mean(tokens == 1) == pytest.approx(float(probs[0]), abs=0.03)


@pytest.mark.parametrize("scratch_start", [pytest.param(None, marks=pytest.mark.integration), 0])
def test_write_samples_keep_prompts_and_continue_from_their_memories(setup, scratch_start):
  """scratch_start None: the RNN writes from the updater's initial memory; 0: from m_empty."""
  cfg, models, params, ref = setup
  x = random_batch(jax.random.key(5), 2, cfg.data.T, cfg.data.vocab_size)["x"]
  out = jax.jit(
    lambda p, x, k: write_samples(
      models, p, x, k, prefix=3, length=4, temperature=0.0, top_k=0, scratch_start=scratch_start
    )
  )(params, x, jax.random.key(6))
  assert {k: v.shape for k, v in out.items()} == {k: (2, 7) for k in ("data", "encoder", "scratch")}
  np.testing.assert_array_equal(out["data"], x[:, :7])
  np.testing.assert_array_equal(out["encoder"][:, :3], x[:, :3])
  m_enc = ref.encode(params, window_at(x, 2, models.encoder_window))
  np.testing.assert_array_equal(out["encoder"][:, 3:], greedy_reference(ref, params, m_enc, 4))
  tc = models.encoder_window
  before = (
    ref.initial_memory(params, 2)
    if scratch_start is None
    else ref.encode(params, jnp.full((2, tc), -1, x.dtype))  # The all-padding window.
  )
  m_scratch = ref.step(params, before, x[:, 0])
  np.testing.assert_array_equal(out["scratch"][:, 0], x[:, 0])
  np.testing.assert_array_equal(out["scratch"][:, 1:], greedy_reference(ref, params, m_scratch, 6))


@pytest.mark.integration
def test_drift_is_exactly_zero_for_an_updater_that_reproduces_the_encoder(setup):
  cfg, models, params, _ = setup
  x = random_batch(jax.random.key(7), 3, cfg.data.T, cfg.data.vocab_size)["x"]
  start, steps = 2, 5

  def drift_of_oracle(p, x):
    # The oracle's memory after reading x[:, t] is the encoder's memory of the window ending at t.
    positions = jnp.broadcast_to(start + jnp.arange(steps + 1), (x.shape[0], steps + 1))
    table = encoder_memories(models, p, x, positions)
    oracle = lambda m, x_t, t: table[jnp.arange(x.shape[0]), t - start]
    return drift_stats(oracle, models, p, x, start, steps)

  # Eager on purpose: under one jit XLA may fuse the encoder's last elementwise ops into the
  # table lookup and the targets differently, which moves memories by an ulp.
  out = drift_of_oracle(params, x)
  np.testing.assert_array_equal(out["drift"], np.zeros(steps))
  np.testing.assert_array_equal(out["one_step"], np.zeros(steps))


@pytest.mark.parametrize("start, steps", [(1, 6), (-1, 8)])
def test_drift_of_the_rnn_matches_python_loop(setup, start, steps):
  """start -1: from m_empty (the all-padding window) over the whole sequence."""
  cfg, models, params, ref = setup
  x = random_batch(jax.random.key(8), 3, cfg.data.T, cfg.data.vocab_size)["x"]
  tc = models.encoder_window
  target = lambda t: ref.encode(params, window_at(x, t, tc))
  m, drift, one_step = target(start), [], []
  for t in range(start + 1, start + steps + 1):
    m = ref.step(params, m, x[:, t])
    drift.append(float(jnp.mean((m - target(t)) ** 2)))
    one_step.append(float(jnp.mean((ref.step(params, target(t - 1), x[:, t]) - target(t)) ** 2)))
  out = jax.jit(lambda p, x: drift_stats(rnn_step_fn(models, p), models, p, x, start, steps))(
    params, x
  )
  np.testing.assert_allclose(out["drift"], drift, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(out["one_step"], one_step, rtol=1e-4, atol=1e-7)
  assert float(out["drift"][0]) == pytest.approx(float(out["one_step"][0]), rel=1e-5)


def test_resolve_eval_derives_defaults_and_names_bad_fields(tiny_config):
  cfg = tiny_config()  # T 8, Tc 4: the encoder prefix defaults to Tc; drift runs from m_empty.
  ec = resolve_eval(cfg)
  assert (ec.T, ec.prefix, ec.drift_steps, ec.lengths, ec.write_length) == (8, 4, 8, (8, 16, 32), 4)
  full_past = resolve_eval(tiny_config(**{"model.teacher.Tc": 8}))  # Tc = T: prefix T // 2.
  assert (full_past.prefix, full_past.drift_steps, full_past.write_length) == (4, 8, 4)
  assert resolve_eval(cfg, pixels=5).write_length == 6  # prompt 4 + 6 = two 5-pixel images
  cfg.eval.prefix = 8
  with pytest.raises(ConfigError, match=r"eval\.prefix=8"):
    resolve_eval(cfg)


def test_lags_section_is_a_default_only_where_answers_name_a_source(tiny_config):
  """Accuracy by lag joins the default sections for an RNN on a task whose answers repeat one
  input token, and naming it elsewhere is refused with the reason."""
  stack = {"data.name": "stack", "data.vocab_size": 6, "data.kwargs": {"depth": 4}}
  assert resolve_eval(tiny_config(**stack)).sections == ("read", "drift", "length", "write", "lags")
  assert "lags" not in resolve_eval(tiny_config()).sections  # Retrieval names no source.
  assert "lags" not in resolve_eval(tiny_config(method="lm", **stack)).sections  # No RNN.
  asked = tiny_config(**{"eval.sections": ("read", "lags")})
  with pytest.raises(ConfigError, match="names 'lags' but data.name='retrieval'"):
    resolve_eval(asked)


@pytest.mark.integration
def test_trace_of_the_last_label_matches_python_loop(setup):
  """trace_last_label against one memory and one future at a time: each row's last label y[j]
  decoded from the encoder's m_t and from the RNN's m_t (read from m_empty), and the drift."""
  cfg, models, params, ref = setup
  T, tf, tc = cfg.data.T, cfg.model.teacher.Tf, models.encoder_window
  batch = random_batch(jax.random.key(9), 16, T, cfg.data.vocab_size)
  x = np.asarray(batch["x"])
  y = np.full_like(x, -1)  # One label per row, at 4 .. 7 (labels = tokens of x): none is
  for b in range(len(x)):  # within Tf = 3 of t = 0, 1.
    y[b, 4 + (3 * b) % 4] = x[b, (5 * b + 1) % T]
  hits, count, drift = np.zeros((2, T)), np.zeros(T), np.zeros(T)
  empty = ref.encode(params, jnp.full((1, tc), -1))
  for b in range(len(x)):
    j, m = int(np.flatnonzero(y[b] >= 0)[-1]), empty
    for t in range(T):
      m = ref.step(params, m, jnp.asarray(x[b : b + 1, t]))
      enc = ref.encode(params, window_at(jnp.asarray(x[b : b + 1]), t, tc))
      drift[t] += float(jnp.mean((m - enc) ** 2)) / len(x)
      if 0 <= j - t < tf:
        future = [int(x[b, i]) if i < T else -1 for i in range(t + 1, t + tf)]
        count[t] += 1
        for row, mem in enumerate((enc, m)):
          logits = ref.decode(params, mem, jnp.asarray([future]))[0, j - t]
          hits[row, t] += int(np.argmax(logits)) == y[b, j]
  whole = jax.jit(lambda p: trace_last_label(cfg, p, {**batch, "y": y}))(params)
  chunked = trace_in_chunks(cfg, params, {**batch, "y": jnp.asarray(y)}, 3)  # 5 chunks, last 1
  with np.errstate(invalid="ignore"):
    expected = np.where(count > 0, hits / count, np.nan)
  for enc_acc, rnn_acc, got_drift in (whole, chunked):
    np.testing.assert_allclose(enc_acc, expected[0], atol=1e-6)
    np.testing.assert_allclose(rnn_acc, expected[1], atol=1e-6)
    np.testing.assert_allclose(got_drift, drift, rtol=1e-4, atol=1e-7)
  assert np.nansum(expected) > 0 and np.isnan(expected).any()  # The check has teeth.


def test_needle_trace_matches_python_loop(setup):
  """trace_needle against one memory at a time: at t = source + r, the encoder's m_t, the RNN's
  m_t (from m_empty), and one update of the encoder's m_{t-1} (m_empty at t = 0) by x[t]."""
  cfg, models, params, ref = setup
  T, tf, tc = cfg.data.T, cfg.model.teacher.Tf, models.encoder_window
  batch = random_batch(jax.random.key(9), 6, T, cfg.data.vocab_size)
  x = np.asarray(batch["x"])
  y = np.full_like(x, -1)
  y[:, T - 1] = x[:, 2]  # The last label asks for x[2], or (row 5) none.
  y[5] = -1
  source, offsets = np.array([2, 0, 5, 7, 3, 1]), np.arange(-3, 4)
  names = ("enc", "rnn", "step")
  hits, reach = np.zeros((3, offsets.size)), np.zeros(offsets.size)
  mse, count = np.zeros((2, offsets.size)), np.zeros(offsets.size)
  empty = ref.encode(params, jnp.full((1, tc), -1))
  for b in range(len(x)):
    row = jnp.asarray(x[b : b + 1])
    rnn, m = [], empty
    for t in range(T):
      m = ref.step(params, m, row[:, t])
      rnn.append(m)
    for i, r in enumerate(offsets):
      t = source[b] + r
      if not 0 <= t < T:
        continue
      enc = ref.encode(params, window_at(row, t, tc))
      stepped = ref.step(params, ref.encode(params, window_at(row, t - 1, tc)), row[:, t])
      count[i] += 1
      mse[:, i] += [float(jnp.mean((rnn[t] - enc) ** 2)), float(jnp.mean((stepped - enc) ** 2))]
      if y[b, T - 1] >= 0 and T - 1 - t < tf:
        future = [int(x[b, j]) if j < T else -1 for j in range(t + 1, t + tf)]
        reach[i] += 1
        for n, mem in enumerate((enc, rnn[t], stepped)):
          logits = ref.decode(params, mem, jnp.asarray([future]))[0, T - 1 - t]
          hits[n, i] += int(np.argmax(logits)) == y[b, T - 1]
  got = jax.jit(
    lambda p: trace_needle(cfg, p, {"x": batch["x"], "y": jnp.asarray(y)}, source, offsets)
  )(params)
  with np.errstate(invalid="ignore"):
    for n, name in enumerate(names):
      expected = np.where(reach > 0, hits[n] / reach, np.nan)
      np.testing.assert_allclose(got[f"{name}_acc"], expected, atol=1e-6)
    np.testing.assert_allclose(got["drift"], mse[0] / count, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got["step_err"], mse[1] / count, rtol=1e-4, atol=1e-7)
  assert np.isnan(got["rnn_acc"]).any() and np.nansum(hits) > 0  # Unreachable and hit offsets.


def test_needle_positions_of_retrieval():
  cfg = make_tiny_config(**{"data.name": "retrieval", "data.T": 12})
  batch = make_dataset(cfg.data, "test").sample(jax.random.key(0), 64, 12)
  x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
  q = np.asarray(needle_positions(cfg, batch["x"]))
  mark = cfg.data.vocab_size - 1  # The first special token is the top of the vocabulary.
  for b in range(64):  # The needle follows the first marker and is the answer.
    assert x[b, q[b] - 1] == mark and not np.any(x[b, : q[b] - 1] == mark)
    assert y[b, -1] == x[b, q[b]]
  with pytest.raises(ConfigError, match="data.name"):
    needle_positions(make_tiny_config(**{"data.name": "copy"}), x)
