"""Parallel-in-time rollouts: the recurrence m_t = f(m_{t-1}, x_t) solved by Newton iterations.

DEER (Lim et al., 2024) treats the whole trajectory M = (m_0 .. m_{L-1}) as the unknown of
M_t = f(M_{t-1}, x_t). Each iteration linearises f around the current guess,
  M'_t = J_t M'_{t-1} + (f(P_t, x_t) - J_t P_t),  P_t = M_{t-1} (P_0 = m_{-1}), J_t = df/dm(P_t),
and solves that linear recurrence with `jax.lax.associative_scan` in ceil(log2 L) sequential
steps. quasi-DEER / quasi-ELK (Gonzalez et al., 2024) keeps only the diagonal of J_t: O(L Z)
memory instead of O(L Z^2), at the price of more iterations.

Both share the sweep property: whatever J, after i iterations the first i memories are exact
(M'_t = F_t whenever M'_{t-1} = P_t), so L iterations always suffice in exact arithmetic; how
many fewer are needed depends on how contracting the dynamics are (`lyapunov_exponent`).

`step_fn` must act row by row (row i of the output depends on row i of m and of x only), as
every updater does: the solvers fold time into the batch and evaluate all L steps in one call.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from smt_jax.objectives.rollout import rollout

SOLVERS = ("scan", "deer", "quasi_deer")


class Diagnostics(NamedTuple):
  """How a parallel solve ended (no gradient flows through these)."""

  iterations: jax.Array  # int32: Newton updates applied.
  residual: jax.Array  # float32: max_t |M_t - f(M_{t-1}, x_t)| of the last Newton iterate.
  converged: jax.Array  # bool: residual <= tol (False on NaN / inf).
  fell_back: jax.Array  # bool: not converged, and the `lax.scan` result was returned instead.


class Settings(NamedTuple):
  """Static solver options (hashable: they key the compiled solve)."""

  diagonal: bool  # True: quasi-DEER (diagonal Jacobians); False: DEER (full Jacobians).
  max_iters: int  # Cap on Newton updates.
  tol: float  # Converged when the residual is <= tol (absolute, in memory units).
  damping: float  # >= 0: Jacobians scaled by 1 / (1 + damping) in the linear solve.
  chunk: int  # Basis vectors pushed through the jvp at once for the Jacobian; 0 = all Z.


def _fold(step_fn: Callable, consts: tuple) -> Callable:
  """(L, B, Z) predecessors, xs with leaves (L, B, ...) -> (L, B, Z): every step at once."""

  def apply(prev, xs):
    length, batch, size = prev.shape
    flat_xs = jax.tree.map(lambda a: a.reshape(length * batch, *a.shape[2:]), xs)
    return step_fn(prev.reshape(-1, size), flat_xs, *consts).reshape(length, batch, size)

  return apply


def jacobians(fn: Callable[[jax.Array], jax.Array], prev: jax.Array, settings: Settings):
  """f(prev) and its per-row Jacobians, for fn acting row by row on (..., Z) arrays.

  Column i of every row's Jacobian is one jvp with the basis vector e_i in every row, so Z jvps
  give all L * B Jacobians. Full: (..., Z, Z) [row, out, in]. Diagonal: (..., Z), entry i taken
  from jvp i, computed `settings.chunk` basis vectors at a time so memory stays O(L B Z) (the
  compute is the same Z jvps as the full Jacobian: a dense updater has no cheaper diagonal).
  """
  size = prev.shape[-1]
  values = fn(prev)

  def column(i):
    tangent = jnp.broadcast_to(jax.nn.one_hot(i, size, dtype=prev.dtype), prev.shape)
    return jax.jvp(fn, (prev,), (tangent,))[1]

  batch = settings.chunk or size
  if settings.diagonal:
    diag = jax.lax.map(lambda i: column(i)[..., i], jnp.arange(size), batch_size=batch)
    return values, jnp.moveaxis(diag, 0, -1)
  cols = jax.lax.map(column, jnp.arange(size), batch_size=batch)  # (Z_in, ..., Z_out)
  return values, jnp.moveaxis(cols, 0, -1)


def linear_recurrence(a: jax.Array, b: jax.Array, diagonal: bool) -> jax.Array:
  """y_t = a_t y_{t-1} + b_t with y_{-1} = 0, by `associative_scan` over (a, b) pairs.

  Args:
    a: (L, ..., Z, Z) matrices, or (L, ..., Z) diagonals with `diagonal`.
    b: (L, ..., Z).
  Returns:
    (L, ..., Z); composing (a1, b1) then (a2, b2) gives (a2 a1, a2 b1 + b2).
  """
  if diagonal:
    combine = lambda e1, e2: (e2[0] * e1[0], e2[0] * e1[1] + e2[1])
  else:
    mm = lambda m, v: jnp.einsum("...ij,...jk->...ik", m, v)
    mv = lambda m, v: jnp.einsum("...ij,...j->...i", m, v)
    combine = lambda e1, e2: (mm(e2[0], e1[0]), mv(e2[0], e1[1]) + e2[1])
  return jax.lax.associative_scan(combine, (a, b))[1]


def max_residual(traj: jax.Array, values: jax.Array) -> jax.Array:
  """max |traj - values| as float32, NaN unless every entry is finite: a diverged iterate must
  never read as converged (XLA's CPU max reduction can skip NaNs and return -inf)."""
  diff = jnp.abs(traj - values)
  return jnp.where(jnp.all(jnp.isfinite(diff)), jnp.max(diff), jnp.nan).astype(jnp.float32)


def newton_solve(fn: Callable, m0: jax.Array, length: int, settings: Settings):
  """Solves M_t = fn(P)_t, P = (m0, M_0 .. M_{L-2}), by (quasi-)Newton from M = m0 everywhere.

  Args:
    fn: (L, B, Z) predecessors -> (L, B, Z) updates, acting on each (t, b) row independently.
    m0: (B, Z).
  Returns:
    ((L, B, Z) trajectory, iterations int32, residual float32 of that trajectory).
  """
  shift = lambda traj: jnp.concatenate([m0[None], traj[:-1]], axis=0)
  scale = 1.0 / (1.0 + settings.damping)

  def body(state):
    traj, _, k, _ = state
    prev = shift(traj)
    values, jac = jacobians(fn, prev, settings)
    jac = jac * scale
    if settings.diagonal:
      offset = values - jac * prev
    else:
      offset = values - jnp.einsum("...ij,...j->...i", jac, prev)
    new = linear_recurrence(jac, offset.at[0].set(values[0]), settings.diagonal)  # P_0 = m0
    new_values = fn(shift(new))
    return new, new_values, k + 1, max_residual(new, new_values)

  def cond(state):
    _, _, k, res = state
    return (k < settings.max_iters) & (res > settings.tol)  # NaN stops: it never converges.

  traj = jnp.broadcast_to(m0, (length, *m0.shape))
  values = fn(shift(traj))
  init = (traj, values, jnp.int32(0), max_residual(traj, values))
  traj, _, iters, res = jax.lax.while_loop(cond, body, init)
  return traj, iters, res


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _solve(step_fn, settings, consts, m0, xs):
  fn = functools.partial(_fold(step_fn, consts), xs=xs)
  return newton_solve(fn, m0, jax.tree.leaves(xs)[0].shape[0], settings)


def _solve_fwd(step_fn, settings, consts, m0, xs):
  out = _solve(step_fn, settings, consts, m0, xs)
  return out, (consts, m0, xs, out[0])


def _solve_bwd(step_fn, settings, saved, cotangents):
  """Implicit gradient at the solution: the adjoint lam_t = g_t + J_{t+1}^T lam_{t+1}
  (lam_{L-1} = g_{L-1}) is one more recurrence, backwards in time and linear, solved by the
  same solver (DEER: one Newton iteration up to roundoff) to a tolerance relative to max |g|
  with a cap of L iterations, which the sweep property makes exact. Then one vjp of every step
  at once gives the parameters', m0's and xs' cotangents."""
  consts, m0, xs, traj = saved
  g = cotangents[0]
  length = traj.shape[0]
  prev = jnp.concatenate([m0[None], traj[:-1]], axis=0)
  _, vjp = jax.vjp(lambda p, x, c: _fold(step_fn, c)(p, x), prev, xs, consts)
  transpose = lambda lam: vjp(lam)[0]  # (L, B, Z): J_t^T lam_t at every t.
  # Reversed time s = L - 1 - t: mu_s = g_{L-1-s} + J_{L-s}^T mu_{s-1}, mu_{-1} = 0.
  # `flip` sends predecessor index s to time L - s (s = 0 to time 0, where mu_{-1} = 0).
  flip = lambda v: jnp.roll(v[::-1], 1, axis=0)
  adjoint = lambda mu_prev: g[::-1] + flip(transpose(flip(mu_prev)))
  tol = settings.tol * jnp.max(jnp.abs(g))  # A traced tolerance: fine inside newton_solve.
  adj_settings = settings._replace(max_iters=length, tol=tol, damping=0.0)
  mu, _, _ = newton_solve(adjoint, jnp.zeros_like(m0), length, adj_settings)
  ct_prev, ct_xs, ct_consts = vjp(mu[::-1])
  return ct_consts, ct_prev[0], ct_xs


_solve.defvjp(_solve_fwd, _solve_bwd)


def solve(
  step_fn: Callable[[jax.Array, Any], jax.Array],
  m0: jax.Array,
  xs: Any,
  settings: Settings,
  *,
  fallback: bool = False,
) -> tuple[jax.Array, Diagnostics]:
  """The rollout of `rollout.rollout` (same arguments and (L, B, Z) result) by (quasi-)Newton.

  Differentiable in m0, xs and whatever step_fn closes over (the parameters) by the implicit
  adjoint of `_solve_bwd`, not by unrolling the iterations: exact at a converged solve (an
  unconverged iterate gets the adjoint of its own Jacobians). fallback: when not converged,
  return the `lax.scan` rollout and its gradients instead (Diagnostics.fell_back says so);
  otherwise the last iterate.
  """
  length, batch = jax.tree.leaves(xs)[0].shape[:2]
  flat_xs = jax.tree.map(lambda a: a.reshape(length * batch, *a.shape[2:]), xs)
  rows = jnp.zeros((length * batch, m0.shape[-1]), m0.dtype)  # the shape `_fold` calls it at
  converted, consts = jax.closure_convert(step_fn, rows, flat_xs)
  traj, iters, res = _solve(converted, settings, tuple(consts), m0, xs)
  iters, res = jax.lax.stop_gradient((iters, res))
  converged = res <= settings.tol
  fell_back = jnp.logical_and(fallback, ~converged)
  if fallback:
    traj = jax.lax.cond(converged, lambda: traj, lambda: rollout(step_fn, m0, xs))
  return traj, Diagnostics(iters, res, converged, fell_back)


def newton_rollout(
  solver: str,
  step_fn,
  m0,
  xs,
  *,
  max_iters: int,
  tol: float,
  damping: float = 0.0,
  chunk: int = 0,
  fallback: bool = False,
) -> tuple[jax.Array, Diagnostics]:
  """`solve` by "deer" (full (Z, Z) Jacobians; memory O(L B Z^2)) or "quasi_deer" (their
  diagonals; memory O(L B Z))."""
  if solver not in ("deer", "quasi_deer"):
    raise ValueError(f"solver={solver!r} is not a Newton solver; use 'deer' or 'quasi_deer'.")
  settings = Settings(solver == "quasi_deer", max_iters, tol, damping, chunk)
  return solve(step_fn, m0, xs, settings, fallback=fallback)


def rollout_with(
  solver: str,
  step_fn: Callable[[jax.Array, Any], jax.Array],
  m0: jax.Array,
  xs: Any,
  *,
  remat: bool = False,
  truncate: int = 0,
  newton: Any = None,
) -> tuple[jax.Array, dict]:
  """`rollout.rollout` by the named solver (one of SOLVERS), with its diagnostics as metrics.

  Args:
    solver: "scan" (`lax.scan`, remat as in `rollout`), "deer" or "quasi_deer" (remat unused:
      their backward pass is the implicit adjoint, which keeps only the trajectory).
    truncate: block truncation of the gradient (`rollout`); "scan" only, since the Newton
      solvers' implicit adjoint differentiates the whole trajectory.
    newton: the config's `newton` group (max_iters, tol, damping, chunk, fallback); unused by
      "scan".
  Returns:
    ((L, B, Z) memories, metrics): {} for "scan"; else float32 scalars solver_iters,
    solver_residual, solver_converged (1 / 0) and solver_fell_back (1 / 0).
  """
  if solver == "scan":
    return rollout(step_fn, m0, xs, remat=remat, truncate=truncate), {}
  if solver not in SOLVERS:
    raise ValueError(f"solver={solver!r} is unknown; use one of {SOLVERS}.")
  if truncate:
    raise ValueError(f"solver={solver!r} differentiates the whole rollout: truncate must be 0.")
  traj, diag = newton_rollout(
    solver,
    step_fn,
    m0,
    xs,
    max_iters=newton.max_iters,
    tol=newton.tol,
    damping=newton.damping,
    chunk=newton.chunk,
    fallback=newton.fallback,
  )
  metrics = {f"solver_{k}": jnp.asarray(v, jnp.float32) for k, v in diag._asdict().items()}
  metrics["solver_iters"] = metrics.pop("solver_iterations")
  return traj, metrics


def lyapunov_exponent(
  step_fn: Callable[[jax.Array, Any], jax.Array],
  m0: jax.Array,
  xs: Any,
  key: jax.Array,
  *,
  burn_in: int = 0,
) -> jax.Array:
  """The largest Lyapunov exponent of m_t = step_fn(m_{t-1}, x_t) along the trajectory from m0,
  per row: the mean over steps t >= burn_in of log |J_t v_{t-1}|, with one tangent vector v
  (random unit start) renormalised after every step (the QR method with one column). In nats
  per step: < 0 contracting (Newton solvers converge in few iterations), > 0 chaotic.

  Args:
    m0: (B, Z); xs: leaves (L, B, ...); key: seeds the start tangents.
  Returns:
    (B,) float32.
  """
  v0 = jax.random.normal(key, m0.shape, m0.dtype)
  v0 = v0 / jnp.linalg.norm(v0, axis=-1, keepdims=True)

  def body(carry, x):
    m, v = carry
    m_next, jv = jax.jvp(lambda m: step_fn(m, x), (m,), (v,))
    growth = jnp.linalg.norm(jv, axis=-1)
    return (m_next, jv / growth[:, None]), jnp.log(growth)

  logs = jax.lax.scan(body, (m0, v0), xs)[1]
  return jnp.mean(logs[burn_in:], axis=0)
