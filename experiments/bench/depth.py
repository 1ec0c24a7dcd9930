"""Sequential depth and matmul FLOPs of a computation, read off its jaxpr.

Sequential depth = the longest chain of *dependent* applications of a marked function (here the
RNN updater) in the computation graph. It is computed generically by a max-plus dataflow pass
over the jaxpr:

  * every value carries a vector of "longest marked chain ending here", one entry per source
    (the inputs of the jaxpr being analysed, plus a constant source 0 for values that exist
    independently of them; -inf = no dependency);
  * an ordinary equation's outputs take the elementwise max of its inputs;
  * a marked call (a `jit` named MARK) adds 1;
  * calls with a sub-jaxpr (jit, remat, custom_jvp/vjp, cond branches) are analysed recursively;
  * a `scan` of length L is analysed once into a max-plus transfer matrix W (body inputs x body
    outputs) and then iterated L times on the carries: a chain through the carry grows by its
    weight every iteration (a scan of L steps with one marked call on the carry gives L), while
    a vmapped/batched call contributes 1 however many timesteps it covers.

With `cut_stop_gradient=True`, `stop_gradient` severs the dependency: the result is the longest
chain that a *gradient* can travel (the credit-assignment path length).

`objective_depths(cfg)` applies the pass to cfg's objective (the function the training step
differentiates): its gradient path is the longest chain of updater applications that a gradient
crosses, measured rather than read off the config.

`mark_updater()` temporarily wraps `smt_jax.models.Models.step` in a `jax.jit` named MARK so
that every objective's updater applications are visible in its jaxpr without changing it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.extend.core as jex_core
import numpy as np

MARK = "updater_step"
NEG = -np.inf


def marked(fn: Callable, name: str = MARK) -> Callable:
  """fn wrapped in a jit whose jaxpr equation is named `name` (inlined by XLA: no cost)."""

  def wrapper(*args):
    return fn(*args)

  wrapper.__name__ = name
  wrapper.__qualname__ = name
  return jax.jit(wrapper)


@contextlib.contextmanager
def mark_updater(name: str = MARK):
  """Within the block, Models.step (the RNN updater f(m, x)) appears in jaxprs as jit[name]."""
  from smt_jax.models import Models

  original = Models.step

  def step(self, params, m, x_t):
    return marked(lambda p, m, x: original(self, p, m, x), name)(params, m, x_t)

  Models.step = step
  try:
    yield
  finally:
    Models.step = original


def _closed(j):
  """(jaxpr, consts-count) of a Jaxpr or ClosedJaxpr."""
  return getattr(j, "jaxpr", j)


def _sub_jaxpr(eqn):
  """The sub-jaxpr of a call-like equation whose inputs/outputs match the equation's, or None."""
  for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
    j = eqn.params.get(key)
    if j is None:
      continue
    inner = _closed(j)
    if (
      hasattr(inner, "invars")
      and len(inner.invars) == len(eqn.invars)
      and len(inner.outvars) == len(eqn.outvars)
    ):
      return inner
  return None


class _Analysis:
  def __init__(self, mark: str, cut_stop_gradient: bool):
    self.mark = mark
    self.cut = cut_stop_gradient
    self.notes: set[str] = set()

  # Each value is a float vector over sources; entry 0 is the constant source.
  def run(self, jaxpr, in_vecs: list[np.ndarray], size: int) -> list[np.ndarray]:
    const = np.full(size, NEG)
    const[0] = 0.0
    env: dict[Any, np.ndarray] = {}

    def read(v):
      if not hasattr(v, "count") and hasattr(v, "val"):  # Literal
        return const
      return env.get(v, const)

    for v, vec in zip(jaxpr.invars, in_vecs):
      env[v] = vec
    for v in getattr(jaxpr, "constvars", []):
      env[v] = const
    for eqn in jaxpr.eqns:
      ins = [read(v) for v in eqn.invars]
      outs = self.eqn(eqn, ins, const)
      for v, vec in zip(eqn.outvars, outs):
        env[v] = vec
    return [read(v) for v in jaxpr.outvars]

  def eqn(self, eqn, ins, const):
    name = eqn.primitive.name
    n_out = len(eqn.outvars)
    joined = np.maximum.reduce(ins) if ins else const
    joined = np.maximum(joined, const)
    if name in ("jit", "pjit") and eqn.params.get("name") == self.mark:
      return [joined + 1.0] * n_out
    if name == "stop_gradient" and self.cut:
      return [const] * n_out
    if name == "scan":
      return self.scan(eqn, ins, const)
    if name == "cond":
      branch_outs = [self.run(_closed(b), ins[1:], len(const)) for b in eqn.params["branches"]]
      return [np.maximum.reduce([bo[i] for bo in branch_outs] + [ins[0]]) for i in range(n_out)]
    if name == "while":
      self.notes.add("while loop: body counted once (trip count unknown)")
      body = _closed(eqn.params["body_jaxpr"])
      nc = eqn.params["body_nconsts"]
      cn = eqn.params["cond_nconsts"]
      carry = ins[cn + nc :]
      return self.run(body, ins[cn : cn + nc] + carry, len(const))
    sub = _sub_jaxpr(eqn)
    if sub is not None:
      return self.run(sub, ins, len(const))
    return [joined] * n_out

  def transfer(self, jaxpr) -> np.ndarray:
    """Max-plus matrix W (1 + n_in, n_out): W[1 + i, j] = longest chain from input i to output j,
    W[0, j] = longest chain to output j that starts from no input."""
    n_in = len(jaxpr.invars)
    size = 1 + n_in
    basis = []
    for i in range(n_in):
      vec = np.full(size, NEG)
      vec[0] = 0.0
      vec[1 + i] = 0.0
      basis.append(vec)
    outs = self.run(jaxpr, basis, size)
    return np.stack(outs, axis=1) if outs else np.zeros((size, 0))

  def scan(self, eqn, ins, const):
    p = eqn.params
    body = _closed(p["jaxpr"])
    length, nc, ncar = p["length"], p["num_consts"], p["num_carry"]
    W = self.transfer(body)  # (1 + n_in, n_out)
    consts, carry, xs = ins[:nc], ins[nc : nc + ncar], ins[nc + ncar :]
    fixed = np.stack([const] + consts + xs) if (consts or xs) else np.stack([const])
    fixed_rows = np.concatenate(
      [[0], 1 + np.arange(nc), 1 + nc + ncar + np.arange(len(xs))]
    ).astype(int)
    carry_rows = 1 + nc + np.arange(ncar)
    # Contribution of the loop-invariant inputs to every output: (n_out, S).
    base = np.max(fixed[:, None, :] + W[fixed_rows][:, :, None], axis=0)
    Wc = W[carry_rows]  # (ncar, n_out)
    cur = np.stack(carry) if carry else np.zeros((0, len(const)))
    ys_best = np.full((W.shape[1] - ncar, len(const)), NEG)
    for _ in range(length):
      if ncar:
        out = np.maximum(base, np.max(cur[:, None, :] + Wc[:, :, None], axis=0))
      else:
        out = base
      ys_best = np.maximum(ys_best, out[ncar:])
      cur = out[:ncar]
    return [cur[i] for i in range(ncar)] + [ys_best[i] for i in range(ys_best.shape[0])]


def sequential_depth(
  fn: Callable, *args, mark: str = MARK, cut_stop_gradient: bool = False, return_notes: bool = False
):
  """Longest chain of dependent `mark` calls in fn(*args) (an int; 0 if none)."""
  # A fresh wrapper: make_jaxpr caches traces per function, and a trace made before (or after)
  # mark_updater() must not be reused.
  closed = jax.make_jaxpr(lambda *a: fn(*a))(*args)
  analysis = _Analysis(mark, cut_stop_gradient)
  n_in = len(closed.jaxpr.invars)
  const = np.array([0.0])
  outs = analysis.run(closed.jaxpr, [const] * n_in, 1)
  depth = max((float(np.max(o)) for o in outs), default=0.0)
  depth = int(depth) if math.isfinite(depth) else 0
  return (depth, sorted(analysis.notes)) if return_notes else depth


def backward_depth(loss: Callable, params, *args, mark: str = MARK) -> int:
  """Longest chain of dependent `mark` calls in the backward pass of the scalar
  loss(params, *args) w.r.t. params: the calls of its VJP that depend on the output cotangent
  (the forward's calls, and the recomputations of remat, do not). This is the gradient path the
  training step runs: with a stop_gradient before every update it is 1 whatever the rollout's
  length, with gradients through a rollout of L updates it is L."""

  def backward(ct, params, *args):
    return jax.vjp(lambda p: loss(p, *args), params)[1](ct)

  ct = jax.ShapeDtypeStruct((), jax.eval_shape(loss, params, *args).dtype)
  closed = jax.make_jaxpr(backward)(ct, params, *args)
  n_in = len(closed.jaxpr.invars)
  seed = np.array([0.0, 0.0])  # Sources: (0) independent of the cotangent, (1) the cotangent.
  rest = np.array([0.0, NEG])
  outs = _Analysis(mark, cut_stop_gradient=False).run(closed.jaxpr, [seed] + [rest] * (n_in - 1), 2)
  depth = max((float(o[1]) for o in outs), default=NEG)
  return int(depth) if math.isfinite(depth) else 0


def objective_depths(cfg, batch_size: int = 2) -> dict:
  """The depths of cfg's objective (`smt_jax.objectives.method_of(cfg).loss`, the function the
  training step differentiates) on a (batch_size, cfg.data.T) batch: "forward_depth" (sequential
  depth of the loss), "gradient_path_depth" (`backward_depth`: updates a gradient crosses) and
  "fwd_bwd_depth" (sequential depth of the loss and its gradient). Traced on abstract values:
  nothing is initialised or run."""
  from smt_jax.models import init_params
  from smt_jax.objectives import method_of

  params = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))
  tokens = jax.ShapeDtypeStruct((batch_size, cfg.data.T), np.int32)
  batch, rng = {"x": tokens, "y": tokens}, jax.random.PRNGKey(0)
  loss = lambda p, b, r: method_of(cfg).loss(p, b, r, cfg)[0]
  with mark_updater():
    return dict(
      forward_depth=sequential_depth(loss, params, batch, rng),
      gradient_path_depth=backward_depth(loss, params, batch, rng),
      fwd_bwd_depth=sequential_depth(jax.grad(loss), params, batch, rng),
    )


# ----------------------------------------------------------------------------------------------
# Matmul FLOPs (XLA's cost analysis counts a while-loop body once; this multiplies by trip count).


def _dot_flops(eqn) -> float:
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  lhs = eqn.invars[0].aval.shape
  out = eqn.outvars[0].aval.shape
  contract = math.prod(lhs[i] for i in lc)
  return 2.0 * math.prod(out) * contract


def _flops(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total += _dot_flops(eqn)
    elif name == "scan":
      total += eqn.params["length"] * _flops(_closed(eqn.params["jaxpr"]))
    elif name == "cond":
      total += max(_flops(_closed(b)) for b in eqn.params["branches"])
    elif name == "while":
      total += _flops(_closed(eqn.params["body_jaxpr"]))
    else:
      for j in jex_core.jaxprs_in_params(eqn.params):
        total += _flops(_closed(j))
  return total


def matmul_flops(fn: Callable, *args) -> float:
  """FLOPs of every dot_general in fn(*args), scans multiplied by their length."""
  return _flops(jax.make_jaxpr(lambda *a: fn(*a))(*args).jaxpr)
