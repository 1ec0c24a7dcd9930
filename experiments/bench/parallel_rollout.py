"""Parallel-in-time rollouts of the updater: Newton iterations, Lyapunov exponent, sequential
depth, wall-clock and Jacobian memory of `lax.scan`, DEER and quasi-DEER against T.

  PYTHONPATH=$PWD python experiments/bench/parallel_rollout.py --device cpu \
    --T 32,128,512 --updaters mlp,transformer [--workdir [LABEL=]RUN ...] [--rounds 3]

For each updater (untrained at the sizes of experiments/configs/repro_retrieval.py, or the
trained one in each --workdir's newest checkpoint, at that run's config) and each T, the RNN
reads B held-out sequences of the run's task from m_empty (SMT / DMT's start):
  - iterations of each Newton solver to the tolerance (capped at --max_iters; non-convergence is
    a row, not an omission) and its trajectory's max deviation from the scan's;
  - the largest Lyapunov exponent along the scan's trajectory (`solvers.lyapunov_exponent`,
    mean over the batch, first quarter discarded);
  - sequential depth: T for the scan, iterations * ceil(log2 T) for the Newton solvers (each
    iteration one associative scan; the step's own depth is the same for all and left out);
  - wall-clock: median over --rounds, the solvers alternating within each round, jitted,
    compile excluded;
  - DEER's Jacobians, T * B * Z^2 * 4 bytes (float32): DEER is skipped (and says so) above
    --jac_limit_gb; quasi-DEER's diagonals cost T * B * Z * 4.
Writes experiments/bench/results/parallel_rollout_{device}.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SOLVER_ORDER = ("scan", "deer", "quasi_deer")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--T", default="32,128,512", help="Comma-separated sequence lengths.")
  p.add_argument(
    "--updaters", default="mlp,transformer", help="Untrained updaters to measure ('' = none)."
  )
  p.add_argument(
    "--workdir",
    action="append",
    default=[],
    help="A trained run (or stage) to measure, as RUN or LABEL=RUN (the row's label; default "
    "RUN's last two folder names); repeatable.",
  )
  p.add_argument("--batch", type=int, default=4, help="Held-out sequences per T.")
  p.add_argument("--max_iters", type=int, default=64, help="Newton iteration cap.")
  p.add_argument("--tol", type=float, default=1e-4, help="Residual tolerance (memory units).")
  p.add_argument("--damping", type=float, default=0.0, help="newton.damping of both solvers.")
  p.add_argument("--rounds", type=int, default=3, help="Timed rounds (median reported).")
  p.add_argument("--jac_limit_gb", type=float, default=2.0, help="Skip DEER above this.")
  p.add_argument("--out", default="", help="JSON path; default results/parallel_rollout_DEV.json")
  return p.parse_args(argv)


def untrained(updater: str, T: int):
  """(cfg, params) of the retrieval study's model with a fresh `updater`."""
  import jax

  from experiments.configs.repro_retrieval import get_config
  from smt_jax.models import init_params

  cfg = get_config(f"T={T}")
  cfg.model.rnn.updater = updater
  return cfg, init_params(cfg, jax.random.PRNGKey(0))


def trained(workdir: str, T: int):
  """(cfg, params) of the newest checkpoint in `workdir`, reading length T."""
  from smt_jax.eval import load_run_config
  from smt_jax.train import load_params

  cfg = load_run_config(workdir)
  cfg.data.T = T
  return cfg, load_params(workdir)[0]


def measure(cfg, params, T: int, args) -> dict:
  """One row: every solver on B held-out sequences of length T."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from smt_jax.data.registry import make_dataset
  from smt_jax.models import build_models
  from smt_jax.objectives import solvers
  from smt_jax.objectives.rollout import rollout

  models = build_models(cfg)
  batch = make_dataset(cfg.data, "test").sample(jax.random.PRNGKey(1), args.batch, T)
  xs = jnp.asarray(batch["x"]).T  # (T, B)
  m0 = jax.jit(models.empty_memory, static_argnums=1)(params, args.batch)
  size = m0.shape[-1]
  step = lambda p: lambda m, x: models.step(p, m, x)
  jac_bytes = T * args.batch * size * size * 4
  newton = solvers.Settings(False, args.max_iters, args.tol, args.damping, 0)
  fns = {"scan": jax.jit(lambda p: (rollout(step(p), m0, xs), None))}
  for name in ("deer", "quasi_deer"):
    if name == "deer" and jac_bytes > args.jac_limit_gb * 2**30:
      continue
    settings = newton._replace(diagonal=name == "quasi_deer")
    fns[name] = jax.jit(lambda p, s=settings: solvers.solve(step(p), m0, xs, s))
  row = {
    "T": T,
    "B": args.batch,
    "Z": size,
    "jacobian_bytes": jac_bytes,
    "diagonal_bytes": T * args.batch * size * 4,
  }
  lyap = jax.jit(
    lambda p: solvers.lyapunov_exponent(step(p), m0, xs, jax.random.PRNGKey(2), burn_in=T // 4)
  )
  row["lyapunov"] = float(jnp.mean(lyap(params)))
  outputs = {}
  for name, fn in fns.items():
    t0 = time.perf_counter()
    outputs[name] = jax.block_until_ready(fn(params))
    row[f"{name}_compile_s"] = time.perf_counter() - t0
  ref = outputs["scan"][0]
  row["scan_depth"] = T
  for name in ("deer", "quasi_deer"):
    if name not in fns:
      row[f"{name}_skipped"] = f"Jacobians {jac_bytes / 2**30:.1f} GiB > --jac_limit_gb"
      continue
    traj, diag = outputs[name]
    row[f"{name}_iters"] = int(diag.iterations)
    row[f"{name}_converged"] = bool(diag.converged)
    row[f"{name}_residual"] = float(diag.residual)
    row[f"{name}_max_dev"] = float(np.max(np.abs(np.asarray(traj) - np.asarray(ref))))  # NaN-safe
    row[f"{name}_depth"] = int(diag.iterations) * math.ceil(math.log2(T))
  times = {name: [] for name in fns}
  for _ in range(args.rounds):  # Alternate: load changes hit every solver alike.
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(params))
      times[name].append(time.perf_counter() - t0)
  for name, ts in times.items():
    row[f"{name}_s"] = statistics.median(ts)
  return row


def table(rows: list[dict]) -> str:
  head = "model          T     lyap   deer it/conv   qdeer it/conv  depth scan/deer/qdeer"
  head += "   scan s   deer s  qdeer s   jac MiB"
  lines = [head]
  for r in rows:
    it = lambda n: (
      f"{r[n + '_iters']:>4}/{'y' if r[n + '_converged'] else 'N'}" if n + "_iters" in r else "skip"
    )
    depth = lambda n: str(r.get(n + "_depth", "-"))
    secs = lambda n: f"{r[n + '_s']:8.3f}" if n + "_s" in r else "       -"
    lines.append(
      f"{r['model']:<14}{r['T']:>4} {r['lyapunov']:>8.3f} {it('deer'):>14} {it('quasi_deer'):>15}"
      f"  {r['T']}/{depth('deer')}/{depth('quasi_deer'):<10} {secs('scan')} {secs('deer')}"
      f" {secs('quasi_deer')} {r['jacobian_bytes'] / 2**20:9.1f}"
    )
  return "\n".join(lines)


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.device == "cpu":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax

  from experiments.bench.common import write_results

  if args.device == "gpu" and jax.default_backend() != "gpu":
    print(f"--device gpu: JAX sees {jax.default_backend()}, not a GPU", file=sys.stderr)
    return 1
  lengths = [int(t) for t in args.T.split(",") if t]
  models = [
    ("untrained " + u, lambda T, u=u: untrained(u, T)) for u in args.updaters.split(",") if u
  ]
  for spec in args.workdir:
    label, _, path = spec.rpartition("=")  # No "=": label "", path spec.
    label = label or "/".join(os.path.normpath(path).split(os.sep)[-2:])
    models.append((label, lambda T, path=path: trained(path, T)))
  out = args.out or os.path.join(RESULTS, f"parallel_rollout_{args.device}.json")
  settings = {k: v for k, v in vars(args).items() if k != "out"}
  rows = []
  for label, make in models:
    for T in lengths:
      cfg, params = make(T)
      row = {"model": label, "updater": cfg.model.rnn.updater, **measure(cfg, params, T, args)}
      rows.append(row)
      print(table([row]).splitlines()[1], flush=True)
      write_results(out, settings, rows)  # After every row: a long grid keeps what it measured.
  print(table(rows))
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
