"""The three objectives against plain Python-loop references, finite differences, and the
gradient-path structure that SMT promises."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CompiledModels, make_tiny_config, random_batch

from smt_jax.models import init_params, mem_size
from smt_jax.objectives import METHODS, bptt, dmt, gradient_path_length, smt, solvers
from smt_jax.objectives.rollout import regrow, rollout

ATOL, RTOL = 2e-5, 2e-4


def _window(x, b, t, length):
  return jnp.array([[int(x[b, i]) if i >= 0 else -1 for i in range(t - length + 1, t + 1)]])


def _token_nll(logits, label):
  return -jax.nn.log_softmax(logits)[label]


def _unit_uniformity(mems, mem_tokens):
  """Brute force: every pair of distinct tokens, with explicit differences."""
  tokens = jnp.concatenate([m.reshape(mem_tokens, -1) for m in mems])
  units = tokens / jnp.linalg.norm(tokens, axis=-1, keepdims=True)
  n = units.shape[0]
  sq = jnp.sum(jnp.square(units[:, None] - units[None]), axis=-1)
  return jnp.log((jnp.sum(jnp.exp(-2.0 * sq)) - n) / (n * (n - 1)))


def loop_smt_loss(params, batch, cfg, times):
  """SMT, one window, one decoder call and one update at a time.

  times: for each sequence b, the list of memory timesteps t trained (dynamics pairs t -> t+1),
  t = -1 being the empty past (an all-padding window). With every timestep, `times[b]` is
  range(-1, T) and the last one has no dynamics pair.
  """
  models = CompiledModels(cfg)
  x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
  length, tc, tf, z = x.shape[1], cfg.model.teacher.Tc, cfg.model.teacher.Tf, mem_size(cfg)
  every = cfg.smt.n_t == 0
  enc = lambda b, t: models.encode(params, _window(x, b, t, tc))[0]
  nll, count, sq, pairs, used = 0.0, 0, 0.0, 0, []
  for b, ts in enumerate(times):
    for t in ts:
      m_t = enc(b, t)
      used.append(m_t)
      future = jnp.array([[int(x[b, t + j]) if t + j < length else -1 for j in range(1, tf)]])
      logits = models.decode(params, m_t[None], future)[0]
      for j in range(tf):
        if 0 <= t + j < length and y[b, t + j] >= 0:
          nll, count = nll + _token_nll(logits[j], int(y[b, t + j])), count + 1
      if t + 1 < length:
        target = enc(b, t + 1)
        if not every:
          used.append(target)
        if cfg.smt.detach_labels:
          target = jax.lax.stop_gradient(target)
        predicted = models.step(params, m_t[None], jnp.array([int(x[b, t + 1])]))[0]
        sq, pairs = sq + jnp.sum(jnp.square(predicted - target)), pairs + 1
  s = cfg.smt
  return (
    s.coef_dec * nll / count
    + s.coef_dyn * sq / (pairs * z)
    + s.coef_unif * _unit_uniformity(used, cfg.model.mem_tokens)
  )


def loop_bptt_loss(params, batch, cfg):
  models = CompiledModels(cfg)
  x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
  if cfg.bptt.start == "empty":  # The encoder on the all-padding window before x[0], per row.
    tc = cfg.model.teacher.Tc
    m = jnp.concatenate([models.encode(params, _window(x, b, -1, tc)) for b in range(len(x))])
  else:
    m = models.initial_memory(params, x.shape[0])
  nll, count = 0.0, 0
  for t in range(x.shape[1]):
    m = models.step(params, m, jnp.asarray(x[:, t]))
    logits = models.read(params, m)
    for b in range(x.shape[0]):
      if y[b, t] >= 0:
        nll, count = nll + _token_nll(logits[b], int(y[b, t])), count + 1
  return nll / count


def loop_dmt_loss(params, batch, cfg):
  models = CompiledModels(cfg)
  x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
  d, tc = cfg.dmt, cfg.model.teacher.Tc
  s = d.start
  td = d.Td or x.shape[1] - 1 - s  # Td = 0: to the end of the sequence.
  enc = lambda b, t: jax.lax.stop_gradient(models.encode(params, _window(x, b, t, tc))[0])
  sq, nll, count = 0.0, 0.0, 0
  for b in range(x.shape[0]):
    m = enc(b, s)  # s = -1: the all-padding window, m_empty.
    for j in range(1, td + 1):
      if d.grad_steps and (j - 1) % d.grad_steps == 0:  # Block truncation (1: every update).
        m = jax.lax.stop_gradient(m)
      m = models.step(params, m[None], jnp.array([int(x[b, s + j])]))[0]
      if j % d.k == 0:
        sq = sq + jnp.sum(jnp.square(m - enc(b, s + j)))
      if y[b, s + j] >= 0:
        logits = models.read(params, jax.lax.stop_gradient(m)[None])[0]
        nll, count = nll + _token_nll(logits, int(y[b, s + j])), count + 1
  supervised = td // d.k
  mse = sq / (x.shape[0] * supervised * mem_size(cfg))
  return d.coef_dyn * mse + d.coef_readout * nll / count


def _assert_trees_close(a, b):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=ATOL, rtol=RTOL), a, b)


def _check_against_loop(objective, reference, cfg, batch, rng=jax.random.key(3)):
  params = init_params(cfg, jax.random.key(0))
  (loss, _), grads = jax.jit(
    jax.value_and_grad(functools.partial(objective, cfg=cfg), has_aux=True)
  )(params, batch, rng)
  ref_loss, ref_grads = jax.value_and_grad(reference)(params)
  np.testing.assert_allclose(loss, ref_loss, atol=ATOL, rtol=RTOL)
  _assert_trees_close(grads, ref_grads)


@pytest.mark.parametrize(
  "detach_labels, remat_encoder, teacher",
  [
    (False, False, {}),
    (True, True, {}),
    # One encoder block: the stream encoder's m_t reads only its own window's embeddings, so
    # the loop's per-window encoding is its reference too.
    (False, False, {"model.teacher.encoder": "stream"}),
    (False, True, {"model.teacher.buckets": 2}),
  ],
  ids=["window", "window-detach-remat", "stream", "window-buckets"],
)
@pytest.mark.integration
def test_smt_every_timestep_matches_python_loop(detach_labels, remat_encoder, teacher):
  cfg = make_tiny_config(
    **{
      "smt.detach_labels": detach_labels,
      "smt.coef_dyn": 0.5,
      "smt.remat_encoder": remat_encoder,
      "smt.coef_unif": 0.1,
      "data.T": 6,
      "model.teacher.Tc": 3,
      **teacher,
    }
  )
  batch = random_batch(jax.random.key(1), 1, cfg.data.T, cfg.data.vocab_size)
  times = [range(-1, cfg.data.T)]
  _check_against_loop(smt.smt_loss, lambda p: loop_smt_loss(p, batch, cfg, times), cfg, batch)


def test_smt_sampled_timesteps_match_python_loop():
  cfg = make_tiny_config(**{"smt.n_t": 3, "smt.coef_unif": 0.1})
  batch = random_batch(jax.random.key(2), 2, cfg.data.T, cfg.data.vocab_size)
  rng = jax.random.key(3)
  t = np.asarray(smt.sample_timesteps(jax.random.split(rng)[0], 2, cfg.data.T, 3)) - 1
  assert all(len(set(row)) == 3 and row.min() >= -1 and row.max() <= cfg.data.T - 2 for row in t)
  _check_against_loop(
    smt.smt_loss, lambda p: loop_smt_loss(p, batch, cfg, t.tolist()), cfg, batch, rng
  )


def test_smt_sampled_timesteps_include_the_empty_past():
  """Sampled positions cover -1 (m_empty) .. T - 2 uniformly."""
  cfg = make_tiny_config(**{"smt.n_t": 1})
  t = np.asarray(smt.sample_timesteps(jax.random.key(0), 4096, cfg.data.T, 1)) - 1
  assert set(np.unique(t).tolist()) == set(range(-1, cfg.data.T - 1))


@pytest.mark.parametrize(
  "n_t, encoder",
  [
    # Every timestep with the window encoder: also in the sampled case (slow: CI time).
    pytest.param(0, "window", marks=pytest.mark.slow),
    (4, "window"),
    (0, "stream"),
    (4, "stream"),
  ],
)
@pytest.mark.integration
def test_smt_full_past_teacher_matches_python_loop(n_t, encoder):
  """Tc = Tf = T (no Tc + Tf <= T rule): every memory encodes x[0..t] (left-padded to T), its
  decoder predicts every later target, and m_empty -> m_0 is a dynamics pair. With Tc = T the
  stream encoder's one-pass m_t is the stream encoder applied to the padded prefix, at any depth
  (two blocks here)."""
  T = 6
  cfg = make_tiny_config(
    **{
      "data.T": T,
      "model.teacher.Tc": T,
      "model.teacher.Tf": T,
      "smt.n_t": n_t,
      "smt.coef_dyn": 0.5,
      "smt.coef_unif": 0.1,
      "model.teacher.encoder": encoder,
      "model.teacher.encoder_depth": 2 if encoder == "stream" else 1,
    }
  )
  batch = random_batch(jax.random.key(11), 2, T, cfg.data.vocab_size, label_every=1)
  rng = jax.random.key(12)
  if n_t:
    times = (np.asarray(smt.sample_timesteps(jax.random.split(rng)[0], 2, T, n_t)) - 1).tolist()
  else:
    times = [range(-1, T)] * 2
  _check_against_loop(smt.smt_loss, lambda p: loop_smt_loss(p, batch, cfg, times), cfg, batch, rng)


@pytest.mark.integration
def test_smt_trains_the_first_transition_from_the_empty_memory():
  """loss_dyn is the mean over T pairs (-1 -> 0), (0 -> 1), .., (T-2 -> T-1), the first being
  f(E(all padding), x_0) ~ E(x[0]), written out here one pair at a time."""
  cfg = make_tiny_config(**{"smt.coef_dyn": 1.0})
  params = init_params(cfg, jax.random.key(0))
  models = CompiledModels(cfg)
  batch = random_batch(jax.random.key(13), 1, cfg.data.T, cfg.data.vocab_size)
  x, tc, T = np.asarray(batch["x"]), cfg.model.teacher.Tc, cfg.data.T
  enc = lambda t: models.encode(params, _window(x, 0, t, tc))
  pair = lambda t: float(
    jnp.mean(jnp.square(models.step(params, enc(t), jnp.array([int(x[0, t + 1])])) - enc(t + 1)))
  )
  first = pair(-1)
  np.testing.assert_allclose(models.empty_memory(params, 1), enc(-1), atol=1e-6)
  _, metrics = smt.smt_loss(params, batch, jax.random.key(0), cfg)
  expected = (first + sum(pair(t) for t in range(T - 1))) / T
  np.testing.assert_allclose(metrics["loss_dyn"], expected, rtol=1e-5)
  assert first > 1e-3 and abs(float(metrics["loss_dyn"]) - (expected * T - first) / (T - 1)) > 1e-5


@pytest.mark.parametrize("encoder", ["window", "stream"])
def test_empty_memory_is_the_encoder_of_an_all_padding_window_in_every_row(encoder):
  """m_empty for a batch (encoded once, broadcast) equals the encoder run on B padding windows."""
  cfg = make_tiny_config(**{"model.teacher.encoder": encoder})
  params = init_params(cfg, jax.random.key(0))
  models = CompiledModels(cfg)
  padding = jnp.full((3, models.encoder_window), -1, jnp.int32)
  m = models.empty_memory(params, 3)
  assert m.shape == (3, mem_size(cfg))
  np.testing.assert_allclose(m, models.encode(params, padding), atol=1e-6)


@pytest.mark.parametrize(
  "updater, start",
  [
    pytest.param("transformer", "init", marks=pytest.mark.integration),
    pytest.param("gru", "init", marks=pytest.mark.integration),
    ("transformer", "empty"),
  ],
)
def test_bptt_matches_python_loop(updater, start):
  cfg = make_tiny_config(**{"method": "bptt", "model.rnn.updater": updater, "bptt.start": start})
  batch = random_batch(jax.random.key(4), 2, cfg.data.T, cfg.data.vocab_size)
  _check_against_loop(bptt.bptt_loss, lambda p: loop_bptt_loss(p, batch, cfg), cfg, batch)


@pytest.mark.parametrize(
  "grad_steps, start, td, teacher",
  [
    pytest.param(1, 1, 5, {}, marks=pytest.mark.integration),
    # A start inside the sequence and the gradient through the rollout: each in another case
    # (slow: CI time).
    pytest.param(0, 1, 5, {}, marks=pytest.mark.slow),
    pytest.param(1, -1, 0, {}, marks=pytest.mark.integration),
    (0, -1, 0, {}),
    pytest.param(0, -1, 0, {"model.teacher.encoder": "stream"}, marks=pytest.mark.integration),
    pytest.param(1, 1, 5, {"model.teacher.encoder": "stream"}, marks=pytest.mark.integration),
    # Targets at -1, 1, 3, 5, 7: windows of 2, 2, 4, 8, 8 tokens (classes 8, 4, 2).
    pytest.param(1, -1, 0, {"model.teacher.buckets": 3}, marks=pytest.mark.integration),
    # Block truncation: stop-gradients before updates 1, 4, 7 (paths of 1 .. 3 updates).
    pytest.param(3, -1, 0, {}, marks=pytest.mark.integration),
  ],
  ids=[
    "detach",
    "bp",
    "empty-detach",
    "empty-bp",
    "empty-bp-stream",
    "detach-stream",
    "buckets",
    "empty-truncated",
  ],
)
def test_dmt_matches_python_loop(grad_steps, start, td, teacher):
  """start -1, Td 0: the rollout starts at m_empty and reads the whole sequence x[0..T-1]. The
  stream encoder has one block here, so its m_t is the encoder applied to its own window."""
  cfg = make_tiny_config(
    **{
      "method": "dmt",
      "dmt.start": start,
      "dmt.Td": td,
      "dmt.grad_steps": grad_steps,
      "dmt.coef_dyn": 2.0,
      "model.teacher.Tc": 8,
      "model.teacher.Tf": 8,
      **teacher,
    }
  )
  batch = random_batch(jax.random.key(5), 2, cfg.data.T, cfg.data.vocab_size, label_every=1)
  _check_against_loop(dmt.dmt_loss, lambda p: loop_dmt_loss(p, batch, cfg), cfg, batch)


def test_dmt_random_starts_stay_in_range():
  cfg = make_tiny_config(**{"dmt.Td": 5, "dmt.random_start": True})
  starts = dmt.rollout_starts(jax.random.key(0), 4096, cfg.data.T, cfg)
  assert set(np.unique(starts).tolist()) == set(range(-1, cfg.data.T - cfg.dmt.Td))


@pytest.mark.integration
def test_bptt_gradient_matches_central_finite_differences():
  cfg = make_tiny_config(
    **{"method": "bptt", "model.rnn.updater": "elman", "model.dtype": "float64", "data.T": 6}
  )
  batch = random_batch(jax.random.key(6), 2, 6, cfg.data.vocab_size, label_every=1)
  with jax.enable_x64(True):
    params = jax.tree.map(lambda p: p.astype(jnp.float64), init_params(cfg, jax.random.key(0)))
    loss = jax.jit(lambda p: bptt.bptt_loss(p, batch, None, cfg)[0])
    grads = jax.grad(loss)(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    flat_grad = jax.flatten_util.ravel_pytree(grads)[0]
    eps = 1e-6
    for i in range(4):
      direction = jax.random.normal(jax.random.key(10 + i), flat.shape, jnp.float64)
      numeric = (loss(unravel(flat + eps * direction)) - loss(unravel(flat - eps * direction))) / (
        2 * eps
      )
      np.testing.assert_allclose(flat_grad @ direction, numeric, rtol=1e-6, atol=1e-9)
    # The recurrent matrix: the only path to its gradient runs back through the time steps.
    recurrent = grads["updater"]["core"]["recurrent"]["kernel"]
    assert np.abs(recurrent).max() > 1e-4


def _primitive_names(jaxpr):
  """Every primitive name in a closed jaxpr, including nested sub-jaxprs."""
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          names |= _primitive_names(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          names |= _primitive_names(sub)
  return names


def test_smt_gradient_graph_has_no_loop_over_time():
  cfg = make_tiny_config()
  params = init_params(cfg, jax.random.key(0))
  batch = random_batch(jax.random.key(1), 2, cfg.data.T, cfg.data.vocab_size)
  jaxpr_of = lambda fn: (
    jax.make_jaxpr(jax.grad(lambda p: fn(p, batch, jax.random.key(0), cfg)[0]))(params).jaxpr
  )
  assert not _primitive_names(jaxpr_of(smt.smt_loss)) & {"scan", "while"}
  assert "scan" in _primitive_names(jaxpr_of(bptt.bptt_loss))  # The detector does see loops.


def _with_perturbed(monkeypatch, module, name, perturb):
  original = getattr(module, name)
  monkeypatch.setattr(module, name, lambda *a, **k: perturb(original, *a, **k))


def test_smt_dynamics_loss_couples_only_adjacent_memories(monkeypatch):
  """d^2 L_dyn / (dm_s dm_u) vanishes for |s - u| >= 2: no term reaches through two updates.
  Memories are indexed by position + 1 (index 0 is m_empty, position -1)."""
  cfg = make_tiny_config(**{"smt.coef_dec": 0.0, "smt.coef_unif": 0.0, "smt.coef_dyn": 1.0})
  params = init_params(cfg, jax.random.key(0))
  batch = random_batch(jax.random.key(1), 1, cfg.data.T, cfg.data.vocab_size)
  z = mem_size(cfg)

  def loss_of(eps):
    _with_perturbed(monkeypatch, smt, "all_memories", lambda f, *a: f(*a) + eps)
    return smt.smt_loss(params, batch, jax.random.key(0), cfg)[0]

  eps0 = jnp.zeros((1, cfg.data.T + 1, z))
  hvp = jax.jit(lambda v: jax.jvp(jax.grad(loss_of), (eps0,), (v,))[1][0])
  for s in range(cfg.data.T + 1):  # A random direction in memory s; its Hessian image per u.
    direction = eps0.at[0, s].set(jax.random.normal(jax.random.key(s), (z,)))
    coupling = np.abs(np.asarray(hvp(direction))).max(axis=1)  # (T + 1,)
    for u in range(cfg.data.T + 1):
      assert (
        (coupling[u] > 1e-6)
        if abs(s - u) == 1
        else (abs(s - u) >= 2 and coupling[u] == 0 or abs(s - u) == 0)
      ), (s, u, coupling)


@pytest.mark.parametrize("grad_steps", [pytest.param(0, marks=pytest.mark.integration), 1, 2, 3])
def test_dmt_stop_gradient_cuts_the_rollout(monkeypatch, grad_steps):
  cfg = make_tiny_config(
    **{
      "dmt.Td": 5,
      "dmt.k": 5,
      "dmt.start": 0,
      "dmt.coef_readout": 0.0,
      "dmt.grad_steps": grad_steps,
    }
  )
  params = init_params(cfg, jax.random.key(0))
  batch = random_batch(jax.random.key(1), 2, cfg.data.T, cfg.data.vocab_size)

  def loss_of(eps):  # eps[j] is added to the rolled memory after update j.
    def perturbed(original, step_fn, m0, xs, **kw):
      return original(lambda m, inp: step_fn(m, inp[0]) + inp[1], m0, (xs, eps), **kw)

    _with_perturbed(monkeypatch, solvers, "rollout", perturbed)  # dmt rolls out by solvers
    return dmt.dmt_loss(params, batch, jax.random.key(0), cfg)[0]

  grads = np.abs(jax.grad(loss_of)(jnp.zeros((5, 2, mem_size(cfg))))).max(axis=(1, 2))
  # The one target is the memory after update 5. Its path reaches eps[j] (after update j + 1)
  # when no stop-gradient sits before updates j + 2 .. 5: stop-gradients before updates
  # 1, g + 1, .. leave update 5 in the block that starts at update 4 (g = 3) or 5 (g = 2).
  reached = {0: range(5), 1: (), 2: (4,), 3: (3, 4)}[grad_steps]
  for j in range(5):
    # g = 1: the supervised memory is regrown from its detached predecessor, off the rollout.
    assert (grads[j] > 1e-6) if j in reached else (grads[j] == 0.0), (j, grads)


def test_rollout_is_the_python_recurrence():
  step = lambda m, x: jnp.tanh(0.5 * m + x[:, None])
  xs = jax.random.normal(jax.random.key(0), (6, 3))
  m, expected = jnp.ones((3, 4)), []
  for x in xs:
    m = step(m, x)
    expected.append(m)
  for remat in (False, True):
    np.testing.assert_allclose(
      rollout(step, jnp.ones((3, 4)), xs, remat=remat), jnp.stack(expected), rtol=1e-6
    )


def _dmt_grads(cfg, batch):
  params = init_params(cfg, jax.random.key(0))
  loss = lambda p: dmt.dmt_loss(p, batch, jax.random.key(3), cfg)[0]
  return jax.jit(jax.grad(loss))(params)


@pytest.mark.integration
def test_dmt_truncation_to_the_whole_rollout_is_full_backprop():
  """grad_steps = Td (and beyond) cuts only before update 1, where m_start is already fixed."""
  base = {"method": "dmt", "dmt.start": -1, "dmt.Td": 0, "dmt.k": 1}
  batch = random_batch(jax.random.key(5), 2, 8, 7, label_every=1)
  full = _dmt_grads(make_tiny_config(**base, **{"dmt.grad_steps": 0}), batch)
  for g in (8, 20):  # Td = T = 8 from m_empty.
    _assert_trees_close(_dmt_grads(make_tiny_config(**base, **{"dmt.grad_steps": g}), batch), full)


def test_truncated_rollout_of_one_step_is_regrow():
  """Block truncation with g = 1 inside the scan gives the gradients of the per-step
  stop-gradient's rollout-without-gradients plus `regrow`."""
  w = jax.random.normal(jax.random.key(0), (4, 4)) * 0.5
  step = lambda w: lambda m, x: jnp.tanh(m @ w + x[:, None])
  xs = jax.random.normal(jax.random.key(1), (3, 6))  # (B, L)
  m0 = jnp.ones((3, 4))
  steps = np.array([2, 3, 6])
  target = jax.random.normal(jax.random.key(2), (3, steps.size, 4))

  def chain_of(rolled):
    return jnp.concatenate([m0[:, None], jnp.swapaxes(rolled, 0, 1)], axis=1)

  def truncated(w, g=1):
    chain = chain_of(rollout(step(w), m0, xs.T, truncate=g))
    return jnp.sum(jnp.square(chain[:, steps] - target))

  def regrown(w):
    chain = chain_of(rollout(step(jax.lax.stop_gradient(w)), m0, xs.T))
    return jnp.sum(jnp.square(regrow(step(w), chain, xs, steps) - target))

  np.testing.assert_allclose(jax.grad(truncated)(w), jax.grad(regrown)(w), rtol=1e-5, atol=1e-6)
  full = jax.grad(lambda w: truncated(w, g=0))(w)  # The check can fail: the paths differ.
  assert not np.allclose(full, jax.grad(regrown)(w), rtol=1e-3)


@pytest.mark.parametrize(
  "overrides, expected",
  [
    ({"method": "smt"}, 1),
    ({"method": "bptt"}, 8),
    ({"method": "dmt", "dmt.Td": 0, "dmt.start": -1}, 8),  # From m_empty: all T tokens.
    ({"method": "dmt", "dmt.Td": 0, "dmt.start": 2}, 5),  # x[3 .. 7].
    ({"method": "dmt", "dmt.Td": 0, "dmt.grad_steps": 3}, 3),
    ({"method": "dmt", "dmt.Td": 0, "dmt.grad_steps": 1}, 1),
    ({"method": "dmt", "dmt.Td": 4, "dmt.grad_steps": 20}, 4),  # Beyond Td: the whole rollout.
    ({"method": "dmt", "dmt.Td": 4, "dmt.random_start": True}, 4),
    # The original's alignment: Td memories from m_s itself, so Td - 1 updates.
    ({"method": "dmt", "dmt.Td": 4, "dmt.start": 2, "dmt.include_start": True}, 3),
  ],
)
def test_gradient_path_length(overrides, expected):
  assert gradient_path_length(make_tiny_config(**overrides), 8) == expected


@pytest.mark.parametrize("saved, expected", [(True, 0), (False, 1)])
def test_saved_backprop_flag_reads_as_grad_steps(tmp_path, saved, expected):
  """A config.json written before dmt.grad_steps (with the bool it replaced) still loads."""
  import json

  from smt_jax.eval.suite import load_run_config

  stage = {"dmt": {"backprop_through_rollout": saved, "k": 1}}
  config = {**stage, "pipeline": {"stages": {"dmt": stage}}}
  (tmp_path / "config.json").write_text(json.dumps(config))
  cfg = load_run_config(str(tmp_path))
  assert cfg.dmt.grad_steps == expected and cfg.dmt.k == 1
  assert cfg.pipeline.stages.dmt.dmt.to_dict() == {"grad_steps": expected, "k": 1}


def test_the_replaced_backprop_flag_is_refused():
  """A config that still sets dmt.backprop_through_rollout (an unlocked copy: a script written
  before dmt.grad_steps) fails validation instead of silently running the whole rollout."""
  import ml_collections

  from smt_jax.errors import ConfigError
  from smt_jax.train.validate import validate_model

  cfg = ml_collections.ConfigDict(make_tiny_config(method="dmt").to_dict())
  cfg.dmt.backprop_through_rollout = False
  with pytest.raises(ConfigError, match="dmt.grad_steps=0 for True"):
    validate_model(cfg)


# A value other than the tiny config's for a field of each prefix some method ignores.
OTHER_VALUES = {
  "model.teacher.Tf": 5,
  "smt.coef_dyn": 0.7,
  "dmt.k": 1,
  "bptt.start": "empty",
}


def _init_loss_and_grads(cfg):
  """(initial params, loss, gradient) of cfg.method on a fixed random batch."""
  params = init_params(cfg, jax.random.key(0))
  batch = random_batch(jax.random.key(1), 2, cfg.data.T, cfg.data.vocab_size)
  loss_fn = lambda p: METHODS[cfg.method].loss(p, batch, jax.random.key(2), cfg)[0]
  return (params, *jax.value_and_grad(loss_fn)(params))


@pytest.mark.parametrize(
  "method",
  # SMT and DMT trace the teacher too: slower, so in the integration tier.
  [m if m in ("bptt", "lm") else pytest.param(m, marks=pytest.mark.integration) for m in METHODS],
)
def test_a_method_computes_the_same_with_the_fields_it_ignores_changed(method):
  """Method.ignores holds: with every field of OTHER_VALUES under an ignored prefix changed, the
  initial parameters, the loss and its gradient are the same. Each prefix has a field here, and
  some other method's loss changes with that field (so the change is not a no-op)."""
  ignored = METHODS[method].ignores
  changed = {k: v for k, v in OTHER_VALUES.items() if k.startswith(ignored)}
  assert all(any(k.startswith(p) for k in changed) for p in ignored), "a prefix lacks a field"
  base = _init_loss_and_grads(make_tiny_config(method=method))
  other = _init_loss_and_grads(make_tiny_config(method=method, **changed))
  jax.tree.map(np.testing.assert_array_equal, base, other)  # Params, loss and gradient.


@pytest.mark.integration
@pytest.mark.parametrize("field", list(OTHER_VALUES))
def test_the_other_values_change_what_a_method_that_reads_them_computes(field):
  """The contrast of the test above: a method that does not ignore `field` computes another
  loss with its other value."""
  method = next(m for m, row in METHODS.items() if not field.startswith(row.ignores))
  loss_of = lambda cfg: _init_loss_and_grads(cfg)[1]
  assert loss_of(make_tiny_config(method=method)) != loss_of(
    make_tiny_config(method=method, **{field: OTHER_VALUES[field]})
  )
