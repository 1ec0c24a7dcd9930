"""Parallel-in-time rollouts (DEER, quasi-DEER) against `lax.scan` and against hand-computed
convergence; the Lyapunov estimator against maps with known exponents."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch

from smt_jax.errors import ConfigError
from smt_jax.eval.read import rnn_read_stats, summarize
from smt_jax.models import UPDATER_NAMES, build_models, init_params
from smt_jax.objectives import bptt, dmt, solvers
from smt_jax.objectives.rollout import rollout
from smt_jax.train.validate import validate_model

SOLVE = {s: functools.partial(solvers.newton_rollout, s) for s in ("deer", "quasi_deer")}


def python_loop(step_fn, m0, xs):
  """The reference recurrence, one step at a time: (L, B, Z)."""
  out, m = [], m0
  for t in range(xs.shape[0]):
    m = step_fn(m, xs[t])
    out.append(m)
  return jnp.stack(out)


@pytest.mark.parametrize(
  "updater",
  [u if u == "elman" else pytest.param(u, marks=pytest.mark.integration) for u in UPDATER_NAMES],
)
def test_trajectory_and_gradients_match_scan_for_every_updater(tiny_config, updater):
  cfg = tiny_config(**{"model.rnn.updater": updater})
  models = build_models(cfg)
  params = init_params(cfg, jax.random.PRNGKey(0))["updater"]
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
  length, batch, size = 6, 2, models.updater.mem_size
  xs = jax.random.randint(k1, (length, batch), 0, cfg.data.vocab_size)
  m0 = jax.random.normal(k2, (batch, size))
  weights = jax.random.normal(k3, (length, batch, size))
  step = lambda p: lambda m, x: models.step({"updater": p}, m, x)

  def loss(solver, p, m):
    if solver == "scan":
      traj = rollout(step(p), m, xs)
    else:
      traj, diag = SOLVE[solver](step(p), m, xs, max_iters=length, tol=1e-6)
    return jnp.sum(weights * jnp.sin(traj)), traj

  grad = lambda s: jax.jit(jax.grad(lambda p, m: loss(s, p, m), (0, 1), has_aux=True))(params, m0)
  (ref_gp, ref_gm), ref = grad("scan")
  np.testing.assert_allclose(ref, python_loop(step(params), m0, xs), atol=1e-5)
  for solver in SOLVE:
    (gp, gm), traj = grad(solver)
    np.testing.assert_allclose(traj, ref, atol=1e-5, err_msg=solver)
    np.testing.assert_allclose(gm, ref_gm, atol=1e-5, rtol=1e-4, err_msg=solver)
    for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(ref_gp)):
      np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4, err_msg=solver)


def tanh_rnn(gain, size=4, vocab=5, seed=0):
  """m_t = tanh(W m_{t-1} + E[x_t]), W with spectral scale `gain` (small: contracting)."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  w = gain * jax.random.normal(k1, (size, size)) / np.sqrt(size)
  emb = jax.random.normal(k2, (vocab, size))
  return w, lambda w_, m, x: jnp.tanh(m @ w_.T + emb[x])


@pytest.mark.integration
def test_gradients_reach_closed_over_params_m0_and_float_inputs():
  w, f = tanh_rnn(0.8)
  xs = jax.random.normal(jax.random.PRNGKey(3), (10, 2, 4))
  m0 = jnp.full((2, 4), 0.3)
  step = lambda w_: lambda m, x: jnp.tanh(m @ w_.T + x)

  def loss(solver, w_, m, x):
    if solver == "scan":
      traj = rollout(step(w_), m, x)
    else:
      traj = SOLVE[solver](step(w_), m, x, max_iters=10, tol=1e-6)[0]
    return jnp.sum(jnp.cos(traj[::3]))

  ref = jax.grad(lambda *a: loss("scan", *a), (0, 1, 2))(w, m0, xs)
  for solver in SOLVE:
    got = jax.grad(lambda *a: loss(solver, *a), (0, 1, 2))(w, m0, xs)
    for a, b in zip(got, ref):
      np.testing.assert_allclose(a, b, atol=1e-5, err_msg=solver)


def test_linear_recurrence_matches_a_loop():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  a, b = jax.random.normal(k1, (7, 3, 3)), jax.random.normal(k2, (7, 3))
  y, ref = jnp.zeros(3), []
  for t in range(7):
    y = a[t] @ y + b[t]
    ref.append(y)
  np.testing.assert_allclose(solvers.linear_recurrence(a, b, False), jnp.stack(ref), rtol=1e-5)
  d, ref = a[..., 0], []
  y = jnp.zeros(3)
  for t in range(7):
    y = d[t] * y + b[t]
    ref.append(y)
  np.testing.assert_allclose(solvers.linear_recurrence(d, b, True), jnp.stack(ref), rtol=1e-5)


@pytest.mark.integration
def test_a_linear_updater_converges_in_one_newton_iteration():
  """Newton on an affine map is exact after one linear solve: 1 iteration (quasi-DEER too when
  the map is diagonal; a dense map needs DEER)."""
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  dense = 0.5 * jax.random.normal(k1, (4, 4))
  diag = jnp.array([0.9, -0.5, 1.2, 0.1])
  xs = jax.random.normal(k2, (16, 3, 4))
  m0 = jax.random.normal(k3, (3, 4))
  cases = [("deer", lambda m, x: m @ dense.T + x), ("quasi_deer", lambda m, x: diag * m + x)]
  cases.append(("deer", cases[1][1]))
  for solver, step in cases:
    traj, info = SOLVE[solver](step, m0, xs, max_iters=5, tol=1e-4)
    assert int(info.iterations) == 1 and bool(info.converged), (solver, info)
    np.testing.assert_allclose(traj, python_loop(step, m0, xs), atol=1e-4)


@pytest.mark.integration
def test_piecewise_affine_map_converges_in_two_iterations():
  """m_t = a |m_{t-1}| + x_t, a = 0.5, x_t in [2, 3), from m_{-1} = -1: the true memories are all
  positive. Iteration 1 linearises at the guess -1 (slope -a) and gives M_t = -a M_{t-1} + x_t,
  all positive (x_t > a * 3); iteration 2 linearises on the true (positive, slope +a) piece,
  where the map is affine, so it is exact: 2 iterations, for both solvers (the map is
  elementwise, so the diagonal is the whole Jacobian)."""
  xs = 2.0 + jax.random.uniform(jax.random.PRNGKey(0), (32, 2, 3))
  m0 = -jnp.ones((2, 3))
  step = lambda m, x: 0.5 * jnp.abs(m) + x
  for solver in SOLVE:
    traj, info = SOLVE[solver](step, m0, xs, max_iters=10, tol=1e-5)
    assert int(info.iterations) == 2 and bool(info.converged), (solver, info)
    np.testing.assert_allclose(traj, python_loop(step, m0, xs), rtol=1e-6)


@pytest.mark.parametrize("solver", list(SOLVE))
def test_after_i_iterations_the_first_i_memories_are_exact(solver):
  """The sweep property of Newton on a recurrence: iteration i makes memory i - 1 exact given
  exact memories before it, whatever the Jacobian approximation."""
  w, f = tanh_rnn(3.0)  # Expanding: no early convergence that would hide the sweep.
  xs = jax.random.randint(jax.random.PRNGKey(2), (12, 2), 0, 5)
  m0 = jnp.zeros((2, 4))
  step = lambda m, x: f(w, m, x)
  ref = python_loop(step, m0, xs)
  for i in (1, 2, 3, 5):
    traj, info = SOLVE[solver](step, m0, xs, max_iters=i, tol=0.0)
    assert int(info.iterations) == i and not bool(info.converged)
    np.testing.assert_allclose(traj[:i], ref[:i], atol=1e-5)
    assert float(jnp.max(jnp.abs(traj[i] - ref[i]))) > 1e-3  # Not exact beyond the sweep.


@pytest.mark.integration
def test_a_chaotic_map_with_a_low_cap_reports_non_convergence_and_can_fall_back():
  """The logistic map m -> 3.9 m (1 - m) (chaotic) over 64 steps does not converge in 4 Newton
  iterations (DEER overflows to NaN, which also stops it): the diagnostics say so; fallback
  returns the scan, flagged."""
  xs = jnp.zeros((64, 1, 1))
  m0 = jnp.full((1, 1), 0.2)
  step = lambda m, x: 3.9 * m * (1.0 - m) + x
  ref = python_loop(step, m0, xs)
  for solver in SOLVE:
    traj, info = SOLVE[solver](step, m0, xs, max_iters=4, tol=1e-5)
    assert not bool(info.converged) and not bool(info.fell_back)
    assert 1 <= int(info.iterations) <= 4 and not float(info.residual) <= 1e-5  # NaN stops early
    assert not np.allclose(traj, ref, atol=1e-2)
    traj, info = SOLVE[solver](step, m0, xs, max_iters=4, tol=1e-5, fallback=True)
    assert not bool(info.converged) and bool(info.fell_back)
    np.testing.assert_allclose(traj, ref, atol=1e-6)


def test_a_diverged_iterate_never_reads_as_converged():
  """All-NaN, partly-inf and finite differences against a NumPy reference (NaN when any entry
  is not finite); a large all-NaN array is where a fast max reduction would return -inf."""
  a = jnp.zeros((128, 2, 128))
  assert np.isnan(float(solvers.max_residual(a, jnp.full_like(a, jnp.nan))))
  assert np.isnan(float(solvers.max_residual(a, a.at[5, 1, 7].set(jnp.inf))))
  b = jax.random.normal(jax.random.PRNGKey(0), a.shape)
  np.testing.assert_allclose(solvers.max_residual(a, b), np.max(np.abs(np.asarray(b))))


@pytest.mark.integration
def test_rollout_with_dispatches_and_reports_metrics():
  w, f = tanh_rnn(0.5)
  xs = jax.random.randint(jax.random.PRNGKey(2), (8, 2), 0, 5)
  m0 = jnp.zeros((2, 4))
  step = lambda m, x: f(w, m, x)
  newton = type("Newton", (), dict(max_iters=8, tol=1e-6, damping=0.0, chunk=2, fallback=False))
  ref, metrics = solvers.rollout_with("scan", step, m0, xs, newton=newton)
  assert metrics == {}
  for solver in SOLVE:
    traj, metrics = solvers.rollout_with(solver, step, m0, xs, newton=newton)
    np.testing.assert_allclose(traj, ref, atol=1e-5)
    assert float(metrics["solver_converged"]) == 1.0 and metrics["solver_fell_back"] == 0.0
    assert 1 <= float(metrics["solver_iters"]) <= 8


def test_damping_keeps_the_solution_and_the_sweep():
  w, f = tanh_rnn(1.5)
  xs = jax.random.randint(jax.random.PRNGKey(4), (10, 2), 0, 5)
  m0 = jnp.zeros((2, 4))
  step = lambda m, x: f(w, m, x)
  ref = python_loop(step, m0, xs)
  traj, info = solvers.newton_rollout(
    "quasi_deer", step, m0, xs, max_iters=10, tol=1e-6, damping=1.0
  )
  assert bool(info.converged)
  np.testing.assert_allclose(traj, ref, atol=1e-5)


def test_lyapunov_exponent_of_maps_with_known_exponents():
  """A linear map Q diag(a) Q^T (Q orthogonal): log max |a|. The nonlinear m -> c tanh(m),
  |c| < 1, settles on its fixed point 0, where the Jacobian is c I: log |c| after a burn-in."""
  a = jnp.array([0.9, -0.5, 0.3])
  q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(0), (3, 3)))
  mat = q @ jnp.diag(a) @ q.T
  xs = jax.random.normal(jax.random.PRNGKey(1), (400, 2, 3))
  step = lambda m, x: m @ mat.T + x
  got = solvers.lyapunov_exponent(step, jnp.zeros((2, 3)), xs, jax.random.PRNGKey(2), burn_in=50)
  np.testing.assert_allclose(got, np.log(0.9), atol=1e-3)
  squash = lambda m, x: -0.7 * jnp.tanh(m)
  m0 = jax.random.normal(jax.random.PRNGKey(3), (2, 3))
  zeros = jnp.zeros((300, 2))
  got = solvers.lyapunov_exponent(squash, m0, zeros, jax.random.PRNGKey(4), burn_in=100)
  np.testing.assert_allclose(got, np.log(0.7), atol=1e-3)


@pytest.mark.integration
def test_objectives_and_the_eval_read_dispatch_on_the_configured_solver(tiny_config):
  """bptt.solver / dmt.solver / eval.solver = a Newton solver: the same loss, gradients and read
  stats as the scan, plus the solver's metrics."""
  base = {"newton.tol": 1e-6, "newton.max_iters": 8, "model.rnn.updater": "elman"}
  batch = random_batch(jax.random.PRNGKey(1), 2, 8, 7)
  rng = jax.random.PRNGKey(2)
  for objective, field, solver in (
    (bptt.bptt_loss, "bptt", "deer"),
    (dmt.dmt_loss, "dmt", "quasi_deer"),
  ):
    results = {}
    for s in ("scan", solver):
      cfg = tiny_config(**base, **{f"{field}.solver": s})
      params = init_params(cfg, jax.random.PRNGKey(0))
      grad_fn = jax.jit(jax.grad(lambda p: objective(p, batch, rng, cfg), has_aux=True))
      results[s] = grad_fn(params)
    (g_ref, m_ref), (g, m) = results["scan"], results[solver]
    assert float(m["solver_converged"]) == 1.0 and "solver_iters" not in m_ref
    np.testing.assert_allclose(m["loss"], m_ref["loss"], rtol=1e-5, err_msg=field)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
      np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4, err_msg=field)
  cfg = tiny_config(**base)
  models, params = build_models(cfg), init_params(cfg, jax.random.PRNGKey(0))
  ref = summarize(rnn_read_stats(models, params, batch, 0))
  got = summarize(rnn_read_stats(models, params, batch, 0, "deer", cfg.newton))
  assert got["solver_unconverged"] == 0 and 1 <= got["solver_iters_mean"] <= 8
  np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-5)


@pytest.mark.parametrize(
  "field, value", [("dmt.solver", "newton"), ("eval.solver", "DEER"), ("newton.tol", 0.0)]
)
def test_bad_solver_settings_are_config_errors(tiny_config, field, value):
  with pytest.raises(ConfigError, match=field):
    validate_model(tiny_config(**{field: value}))
