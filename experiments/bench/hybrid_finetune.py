"""BPTT fine-tuning of a trained SMT -> DMT RNN through a Newton rollout (DEER or quasi-DEER)
against the same fine-tuning through `lax.scan`: one config, seed and batch order, so the two loss
curves agree to the solver's tolerance if the Newton rollout and its implicit gradient are right;
the Newton side reports its iterations and residual per update, both their seconds per update.

  PYTHONPATH=$PWD python experiments/bench/hybrid_finetune.py --config tasks.py:task=stack,T=32 \
    --init workdirs/study10/gradient_path/runs/stack_T32_k1/dmt --steps 10 --solver deer \
    --workdir workdirs/hybrid --out experiments/bench/results/hybrid_finetune_cpu.json

Each side runs the config's "finetune" stage (BPTT from m_empty with the stage's optimiser,
experiments/configs FINETUNE_STAGE) from --init into --workdir/SOLVER, logging every update.
--batch_size shrinks the updates (and the closing validation read, which runs through the solver
too, to one batch of that size) where the Newton side's Jacobians are costly, e.g. retrieval at
T = 128: `--config repro_retrieval.py:T=128 --batch_size 8`. Each side's stage folder is a
trained RNN: `python -m smt_jax.export WORKDIR/SOLVER/finetune --out FILE.npz`, then
experiments/remeasure.py --rnn=FILE.npz reads it on fresh sequences.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
STAGE = "finetune"


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
    "--config", required=True, help="experiments/configs FILE[:ARG] with a finetune stage"
  )
  p.add_argument("--init", required=True, help="the trained stage to fine-tune (e.g. RUN/dmt)")
  p.add_argument("--updater", default="transformer", help="model.rnn.updater of --init")
  p.add_argument("--steps", type=int, default=10, help="fine-tuning updates per side")
  p.add_argument("--batch_size", type=int, default=0, help="sequences per update (0: the config's)")
  p.add_argument("--solver", choices=("deer", "quasi_deer"), default="deer")
  p.add_argument("--workdir", default="workdirs/hybrid", help="runs go to WORKDIR/SOLVER")
  p.add_argument("--out", default=os.path.join(RESULTS, "hybrid_finetune_cpu.json"))
  return p.parse_args(argv)


def train_rows(metrics_path: pathlib.Path) -> dict:
  """{step: the training row} of a stage's metrics.jsonl."""
  rows = (json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip())
  return {r["step"]: r for r in rows if r.get("split") == "train"}


def compare(scan: dict, newton: dict) -> list[dict]:
  """Per update in both runs: each side's loss and gradient norm, their absolute differences,
  the Newton solve's iterations, residual and convergence, and each side's seconds for that
  update (from the rows' cumulative elapsed_s)."""
  out, before = [], {"scan": 0.0, "newton": 0.0}
  for step in sorted(set(scan) & set(newton)):
    a, b = scan[step], newton[step]
    out.append(
      {
        "step": step,
        "loss_scan": a["loss"],
        "loss_newton": b["loss"],
        "loss_diff": abs(a["loss"] - b["loss"]),
        "grad_norm_scan": a["grad_norm"],
        "grad_norm_newton": b["grad_norm"],
        "grad_norm_rel_diff": abs(a["grad_norm"] - b["grad_norm"]) / max(a["grad_norm"], 1e-12),
        "iters": b.get("solver_iters"),
        "residual": b.get("solver_residual"),
        "converged": b.get("solver_converged"),
        "s_scan": a["elapsed_s"] - before["scan"],
        "s_newton": b["elapsed_s"] - before["newton"],
      }
    )
    before = {"scan": a["elapsed_s"], "newton": b["elapsed_s"]}
  return out


def table(rows: list[dict]) -> str:
  lines = [
    "step  loss scan  loss newton  |diff|    grad rel diff  iters  residual  s scan  s newton"
  ]
  for r in rows:
    lines.append(
      f"{r['step']:4d}  {r['loss_scan']:.6f}   {r['loss_newton']:.6f}    {r['loss_diff']:.1e}"
      f"   {r['grad_norm_rel_diff']:.1e}        {r['iters']:5.0f}  {r['residual']:.1e}"
      f"  {r['s_scan']:6.2f}  {r['s_newton']:8.2f}"
    )
  return "\n".join(lines)


def stage_overrides(args, solver: str) -> dict:
  """Config overrides of one side: the finetune stage alone from --init, through `solver`, a
  metrics row per update, one closing validation read (of one --batch_size batch if given)."""
  out = {
    "pipeline.order": [STAGE],
    "model.rnn.updater": args.updater,
    f"pipeline.stages.{STAGE}.ckpt.init_from": os.path.abspath(args.init),
    f"pipeline.stages.{STAGE}.train.num_steps": args.steps,
    "bptt.solver": solver,
    "log.every": 1,  # A row per update: the curves are compared update by update.
    "train.eval_every": args.steps,
    "ckpt.every": args.steps,
    "train.final_eval": False,
  }
  if args.batch_size:  # The closing validation read runs through the solver too: one batch.
    out.update(
      {
        "train.batch_size": args.batch_size,
        "train.eval_batch_size": args.batch_size,
        "train.eval_batches": 1,
      }
    )
  return out


def main(argv=None) -> int:
  args = parse_args(argv)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  from experiments.bench.common import write_results
  from experiments.repro import runner
  from smt_jax.train.pipeline import run_pipeline

  for solver in ("scan", args.solver):
    overrides = stage_overrides(args, solver)
    cfg = runner.run_config(runner.Run(solver, args.config, overrides, 0, {}))
    run_pipeline(cfg, pathlib.Path(args.workdir) / solver)
  rows = compare(
    *(
      train_rows(pathlib.Path(args.workdir) / s / STAGE / "metrics.jsonl")
      for s in ("scan", args.solver)
    )
  )
  write_results(args.out, vars(args), rows)
  print(table(rows))
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
