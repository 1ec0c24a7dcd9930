"""The answer trace (smt_jax.eval.measures.trace_answers) of any task's answer positions against
a Python loop over one memory, one answer and one future at a time, on a tiny model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_tiny_config, random_batch

from smt_jax.data import make_dataset
from smt_jax.eval.config import final_eval_batches
from smt_jax.eval.measures import (
  carried_reads,
  carry_lengths,
  last_label_only,
  rnn_alone,
  trace_answers,
  trace_in_chunks,
)
from smt_jax.models import build_models, init_params


def window_at(x, t, tc):
  """The encoder window ending at t, left-padded with -1: (B, Tc)."""
  lo = max(t - tc + 1, 0)
  return jnp.concatenate(
    [jnp.full((x.shape[0], tc - (t + 1 - lo)), -1, x.dtype), x[:, lo : t + 1]], axis=1
  )


def reference(cfg, models, params, x, y):
  """(enc_acc, rnn_acc) per t: over every answer y[b, j] >= 0 with 0 <= j - t < Tf, whether the
  decoder reading m_t (encoder's, or the RNN's from m_empty) and x[t+1 .. j] predicts it."""
  T, tf, tc = x.shape[1], cfg.model.teacher.Tf, models.encoder_window
  encode = jax.jit(models.encode)
  step, decode = jax.jit(models.step), jax.jit(models.decode)
  hits, count = np.zeros((2, T)), np.zeros(T)
  empty = encode(params, jnp.full((1, tc), -1))
  for b in range(len(x)):
    m = empty
    for t in range(T):
      m = step(params, m, jnp.asarray(x[b : b + 1, t]))
      enc = encode(params, window_at(jnp.asarray(x[b : b + 1]), t, tc))
      future = [int(x[b, i]) if i < T else -1 for i in range(t + 1, t + tf)]
      logits = [decode(params, mem, jnp.asarray([future]))[0] for mem in (enc, m)]
      for j in range(t, min(t + tf, T)):
        if y[b, j] >= 0:
          count[t] += 1
          for row in range(2):
            hits[row, t] += int(np.argmax(logits[row][j - t])) == y[b, j]
  with np.errstate(invalid="ignore"):
    return np.where(count > 0, hits / count, np.nan)


@pytest.mark.integration
def test_answer_trace_matches_python_loop():
  cfg = make_tiny_config(**{"model.rnn.updater": "gru"})
  models = build_models(cfg)
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  T = cfg.data.T
  batch = random_batch(jax.random.key(3), 6, T, cfg.data.vocab_size)
  x = np.asarray(batch["x"])
  y = np.full_like(x, -1)  # Several answers per row (labels = tokens of x), none at t = 0, 1.
  for b in range(len(x)):
    for j in (2 + b % 3, 5, 6 + b % 2):
      y[b, j] = x[b, (3 * j + b) % T]
  expected = reference(cfg, models, params, x, y)
  whole = jax.jit(lambda p: trace_answers(cfg, p, {"x": batch["x"], "y": jnp.asarray(y)}))(params)
  chunked = trace_in_chunks(cfg, params, {"x": batch["x"], "y": jnp.asarray(y)}, 4)  # 4 + 2
  for enc_acc, rnn_acc, _ in (whole, chunked):
    np.testing.assert_allclose(enc_acc, expected[0], atol=1e-6)
    np.testing.assert_allclose(rnn_acc, expected[1], atol=1e-6)
  assert np.nansum(expected) > 0  # The check has teeth: some answers are decoded.


def carried_reference(cfg, models, params, batches, carries):
  """(acc, count, distance) per k of `carried_reads`, one sequence, label and start at a time:
  the updater reads x[t-k+1 .. t] from the encoder's window ending at t - k (m_empty at -1);
  and the signal, np.var of every sequence's encoder memories across sequences."""
  rnn, _ = rnn_alone(cfg, params)
  encode, step, read = jax.jit(models.encode), jax.jit(models.step), jax.jit(models.read)
  tc = models.encoder_window
  empty = encode(params, jnp.full((1, tc), -1))
  memory_at = lambda row, t: empty if t < 0 else encode(params, window_at(row, t, tc))
  hits, count, squares = np.zeros((3, len(carries)))
  rows, memories = 0, []
  for batch in batches:
    x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
    for b in range(len(x)):
      row = jnp.asarray(x[b : b + 1])
      rows += 1
      memories.append([np.asarray(memory_at(row, t))[0] for t in range(x.shape[1])])
      for i, k in enumerate(carries):
        distances = []
        for t in range(max(k - 1, 0), x.shape[1]):
          m = memory_at(row, t - k)
          for j in range(t - k + 1, t + 1):
            m = step(rnn, m, row[:, j])
          distances.append(float(jnp.mean(jnp.square(m - memory_at(row, t)))))
          if y[b, t] >= 0:
            count[i] += 1
            hits[i] += int(np.argmax(read(rnn, m)[0])) == y[b, t]
        squares[i] += np.mean(distances)
  return hits / count, count, squares / rows, np.var(np.asarray(memories), axis=0).mean()


@pytest.mark.integration
def test_carried_reads_match_a_python_loop():
  """The "carry" section's reads on the stack's test sequences, against `carried_reference`."""
  cfg = stack_config("smt")
  cfg.eval.batch_size, cfg.eval.num_batches = 3, 2
  models = build_models(cfg)
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(5))
  carries = carry_lengths(cfg.data.T)
  assert carries == [0, 1, 2, 4, 8]
  got = carried_reads(cfg, params, carries)
  batches = final_eval_batches(make_dataset(cfg.data, "test"), cfg.eval.seed, "read", 8, 2, 3)
  acc, count, distance, signal = carried_reference(cfg, models, params, batches, carries)
  assert got["carries"] == carries and got["count"] == count.astype(int).tolist()
  assert count[-1] > 0 and got["distance"][0] == 0  # k = T reads from m_empty; k = 0 is m_t.
  np.testing.assert_allclose(got["acc"], acc, atol=1e-6)
  np.testing.assert_allclose(got["distance"], distance, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(got["signal"], signal, rtol=1e-4)


def test_last_label_only_keeps_each_rows_last_answer():
  y = np.array([[-1, 3, -1, 4, -1], [-1, -1, -1, -1, -1], [2, -1, -1, -1, 5]])
  expected = np.array([[-1, -1, -1, 4, -1], [-1] * 5, [-1, -1, -1, -1, 5]])
  np.testing.assert_array_equal(last_label_only(jnp.asarray(y)), expected)


def stack_config(method):
  """The tiny model on the stack (depth 4, T 8), 2 updates, 2 test batches of 8 sequences."""
  import ml_collections

  cfg = make_tiny_config(
    method=method,
    **{
      "train.num_steps": 2,
      "train.batch_size": 4,
      "train.eval_every": 2,
      "train.eval_batch_size": 4,
      "train.eval_batches": 1,
      "train.final_eval": False,
      "log.plot": False,
      "eval.batch_size": 8,
      "eval.num_batches": 2,
    },
  )
  cfg.data.name = "stack"
  cfg.data.kwargs = ml_collections.ConfigDict({"depth": 4, "p_push": 0.5})
  return cfg


def python_lags(x, pop):
  """t - (the push each pop undoes), -1 elsewhere, by a Python list of push positions."""
  pushed, out = [], []
  for t, token in enumerate(x):
    out.append(t - pushed.pop() if token == pop else -1)
    if token != pop:
      pushed.append(t)
  return out


@pytest.mark.integration
@pytest.mark.parametrize("method", ["smt", "bptt"])
def test_read_by_lag_equals_reads_of_each_buckets_answers_alone(tmp_path, method):
  """Each bucket's accuracy is the read (RNN from x[0], the teacher) of the final evaluation's
  test batches with every other label masked, the buckets picked by a Python stack of pushes."""
  from smt_jax.checkpointing import load_params
  from smt_jax.data import make_dataset
  from smt_jax.eval import evaluate_workdir, format_table
  from smt_jax.eval.config import final_eval_batches
  from smt_jax.eval.measures import lag_edges, read_by_lag, rnn_alone
  from smt_jax.eval.read import read_stats_from, teacher_read_stats
  from smt_jax.train import train_and_evaluate

  cfg = stack_config(method)
  train_and_evaluate(cfg, tmp_path)
  edges = (1, 2, 4, 8)
  models, (params, _) = build_models(cfg), load_params(tmp_path)
  got = read_by_lag(cfg, params, edges)
  rnn, m_start = rnn_alone(cfg, params)
  task = make_dataset(cfg.data, "test")
  hits, count = np.zeros((2, 3)), np.zeros(3)
  for batch in final_eval_batches(task, cfg.eval.seed, "read", 8, 2, 8):
    x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
    lags = np.asarray([python_lags(row, task.special("pop")) for row in x.tolist()])
    for b, (lo, hi) in enumerate(zip(edges, edges[1:])):
      masked = {"x": batch["x"], "y": jnp.asarray(np.where((lags >= lo) & (lags < hi), y, -1))}
      m0 = jnp.broadcast_to(m_start, (8, *m_start.shape))
      hits[0, b] += float(read_stats_from(models, rnn, m0, masked)["hits"].sum())
      if method == "smt":
        hits[1, b] += float(teacher_read_stats(models, params, masked)["hits"].sum())
      count[b] += ((lags >= lo) & (lags < hi)).sum()
  assert got["edges"] == list(edges) and got["count"] == count.astype(int).tolist()
  assert count.sum() > 0
  expect = lambda row: [None if c == 0 else h / c for h, c in zip(hits[row], count)]
  np.testing.assert_allclose(
    [np.nan if a is None else a for a in got["rnn_acc"]],
    [np.nan if a is None else a for a in expect(0)],
  )
  if method == "smt":
    np.testing.assert_allclose(
      [np.nan if a is None else a for a in got["teacher_acc"]],
      [np.nan if a is None else a for a in expect(1)],
    )
  else:
    assert got["teacher_acc"] is None
  # The evaluation's lags section is the same read over every lag of T, with its plot.
  summary = evaluate_workdir(str(tmp_path), {"eval.sections": ("lags",)})
  assert summary["lags"] == {**read_by_lag(cfg, params, lag_edges(8)), "file": "lags.png"}
  assert (tmp_path / "lags.png").is_file() and "accuracy by lag" in format_table(summary)


@pytest.mark.parametrize("name", ["modular", "wikitext_chars"])
def test_read_by_lag_refuses_data_without_answer_sources(name):
  """A task with no single source per answer, or real data, is refused before any parameter
  is read (there are none)."""
  from smt_jax.errors import ConfigError
  from smt_jax.eval.measures import read_by_lag

  cfg = stack_config("smt")
  cfg.data.name = name
  with pytest.raises(ConfigError, match=f"data.name='{name}': accuracy by lag needs"):
    read_by_lag(cfg, {}, (1, 2))


@pytest.mark.integration
@pytest.mark.parametrize("method", ["smt", "bptt"])
def test_state_probe_equals_probes_of_memories_rolled_by_a_python_loop(method):
  """The "state" section (`state_probe`) on a tiny untrained model against ridge probes of
  memories from a Python loop over tokens (the RNN from its start; the encoder's window at each
  t) and slots from a Python stack, on the same fit / choose / score sequences."""
  from test_data_synthetic import python_stack_slots

  from smt_jax.eval.measures import PROBE_SETS, PROBE_SLOTS, lag_edges, state_probe
  from smt_jax.eval.probe import ridge_probe

  cfg = stack_config(method)
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(3))
  edges = lag_edges(cfg.data.T)
  got = state_probe(cfg, params, edges)
  models = build_models(cfg)
  rnn, m_start = rnn_alone(cfg, params)
  step, encode = jax.jit(models.step), jax.jit(models.encode)
  pop, tc = cfg.data.vocab_size - 1, models.encoder_window
  roles = ["rnn", "teacher"] if method == "smt" else ["rnn"]
  sets = []
  for split, num in PROBE_SETS:
    task = make_dataset(cfg.data, split)
    x = np.asarray(next(final_eval_batches(task, cfg.eval.seed, "state", 8, 1, num))["x"])
    m, rolled, encoded = jnp.broadcast_to(m_start, (num, *m_start.shape)), [], []
    for t in range(x.shape[1]):
      m = step(rnn, m, jnp.asarray(x[:, t]))
      rolled.append(np.asarray(m).reshape(num, -1))
      if method == "smt":
        encoded.append(
          np.asarray(encode(params, window_at(jnp.asarray(x), t, tc))).reshape(num, -1)
        )
    slots = [python_stack_slots(row, pop, 4) for row in x.tolist()]
    symbols, ages = (np.array([s[i] for s in slots]) for i in (0, 1))
    memories = {"rnn": np.stack(rolled, 1), "teacher": np.stack(encoded, 1) if encoded else None}
    sets.append((memories, symbols, ages))
  assert got["slots"] == list(range(PROBE_SLOTS)) and got["edges"] == edges
  assert (got["teacher_acc"] is None) == (method == "bptt")
  for role in roles:
    for j in range(PROBE_SLOTS):
      held = [s[..., j] >= 0 for _, s, _ in sets]
      fit, choose, score = ((m[role][h], s[..., j][h]) for (m, s, _), h in zip(sets, held))
      hits, penalty = ridge_probe(fit, choose, score, task.n_symbols)
      age = sets[-1][2][..., j][held[-1]]
      for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        inside = (age + 1 >= lo) & (age + 1 < hi)
        assert got["count"][j][i] == inside.sum()
        want = hits[inside].mean() if inside.any() else None
        assert got[f"{role}_acc"][j][i] == pytest.approx(want, abs=1e-9), (role, j, i)
      assert got["penalty"][role][j] == penalty
  assert sum(map(sum, got["count"])) > 0 and got["count"][3][0] == 0  # Slot 3 is never 0 old.


@pytest.mark.integration
def test_state_probe_probes_no_deeper_than_the_stack():
  """A stack of depth 2 has two slots to probe, not PROBE_SLOTS (4)."""
  from smt_jax.eval.measures import lag_edges, state_probe

  cfg = stack_config("bptt")
  cfg.data.kwargs.depth = 2
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(3))
  got = state_probe(cfg, params, lag_edges(cfg.data.T))
  assert got["slots"] == [0, 1] and np.asarray(got["count"]).shape == (2, 3)
  assert len(got["rnn_acc"]) == 2 and got["teacher_acc"] is None
