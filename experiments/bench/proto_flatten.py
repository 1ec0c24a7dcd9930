"""Prototype: SMT with the per-timestep maps flattened into the batch instead of vmapped.

`smt_jax.objectives.windows.over_time` vmaps encoder/decoder/updater over axis 1. This
prototype swaps it (in this process only) for a reshape (B, n, ...) -> (B * n, ...), which is the
same math (every module is per-example), and times both on the same machine, alternating.

  python experiments/bench/proto_flatten.py [--batch 32] [--T 128] [--n_t 1]
"""

import argparse
import contextlib
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402


def flat_over_time(fn):
  def mapped(*args):
    B, n = args[0].shape[:2]
    out = fn(*(a.reshape((B * n,) + a.shape[2:]) for a in args))
    return out.reshape((B, n) + out.shape[1:])
  return mapped


@contextlib.contextmanager
def flattened():
  from smt_jax.objectives import smt as smt_module, windows
  saved = (smt_module.over_time, windows.over_time)
  smt_module.over_time = windows.over_time = flat_over_time
  try:
    yield
  finally:
    smt_module.over_time, windows.over_time = saved


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--T", type=int, default=128)
  ap.add_argument("--n_t", type=int, default=1)
  ap.add_argument("--rounds", type=int, default=3)
  a = ap.parse_args()
  cfg = common.variant_config(common.reference_config(a.T), "smt_n1")
  cfg.smt.n_t = a.n_t
  steps = {}
  for name, ctx in (("vmap", contextlib.nullcontext), ("flatten", flattened)):
    init_state, step = common.make_train_step(cfg)
    rng = jax.random.PRNGKey(0)
    batch = common.random_batch(jax.random.PRNGKey(1), a.batch, a.T, cfg.data.vocab_size)
    with ctx():
      state = init_state(rng)
      compiled, _ = common.compile_step(step, state, batch, rng)
      loss_check = common.OBJECTIVES["smt"](init_state(rng)[0], batch, rng, cfg)[0]
    steps[name] = (compiled, init_state(rng), batch, rng, float(loss_check))
  print("loss at init (same math):", {k: v[4] for k, v in steps.items()})
  times = {k: [] for k in steps}
  holders = {k: {"s": v[1]} for k, v in steps.items()}  # the state is donated: keep the latest
  for _ in range(a.rounds):  # alternate so both see the same load
    for name, (compiled, _, batch, rng, _) in steps.items():
      holder = holders[name]
      def call():
        holder["s"], loss = compiled(holder["s"], batch, rng)
        return loss
      times[name] += common.time_calls(call, 3, warmup=1)
  med = {k: statistics.median(v) for k, v in times.items()}
  print({k: f"{v * 1e3:.0f} ms" for k, v in med.items()},
        f"flatten / vmap = {med['flatten'] / med['vmap']:.2f}")


if __name__ == "__main__":
  main()
