"""experiments/bench/hybrid_finetune.py: the update-by-update comparison of a fine-tune through
lax.scan with the same fine-tune through a Newton rollout, on hand-written metrics rows."""

import json

from experiments.bench import hybrid_finetune
from experiments.repro import runner
from smt_jax.train.pipeline import stage_config


def _row(step, loss, grad_norm, elapsed, **extra):
  return {
    "step": step,
    "split": "train",
    "loss": loss,
    "grad_norm": grad_norm,
    "elapsed_s": elapsed,
    **extra,
  }


def test_compare_pairs_updates_and_takes_per_update_seconds(tmp_path):
  scan = tmp_path / "scan.jsonl"
  scan.write_text(
    "\n".join(
      json.dumps(r)
      for r in (
        _row(1, 0.5, 2.0, 10.0),
        {"step": 1, "split": "eval", "loss": 9.0},  # Evaluation rows are not updates.
        _row(2, 0.4, 1.0, 10.5),
        _row(3, 0.3, 1.0, 11.0),  # No Newton row for update 3: left out.
      )
    )
  )
  newton = tmp_path / "newton.jsonl"
  rows = [
    _row(1, 0.5001, 2.002, 100.0, solver_iters=11.0, solver_residual=1e-5, solver_converged=1.0)
  ]
  rows.append(
    _row(2, 0.4, 0.999, 190.0, solver_iters=12.0, solver_residual=2e-5, solver_converged=1.0)
  )
  newton.write_text("\n".join(map(json.dumps, rows)) + "\n")
  out = hybrid_finetune.compare(
    hybrid_finetune.train_rows(scan), hybrid_finetune.train_rows(newton)
  )
  assert [r["step"] for r in out] == [1, 2]
  first, second = out
  assert abs(first["loss_diff"] - 1e-4) < 1e-12 and abs(first["grad_norm_rel_diff"] - 1e-3) < 1e-12
  assert (first["s_scan"], first["s_newton"]) == (10.0, 100.0)
  assert (second["s_scan"], second["s_newton"]) == (0.5, 90.0)
  assert (second["iters"], second["residual"], second["converged"]) == (12.0, 2e-5, 1.0)
  assert "   12" in hybrid_finetune.table(out).splitlines()[2]


def _stage(argv, solver):
  """The finetune stage's run config as run_pipeline would train it on one side."""

  args = hybrid_finetune.parse_args(argv)
  overrides = hybrid_finetune.stage_overrides(args, solver)
  cfg = runner.run_config(runner.Run(solver, args.config, overrides, 0, {}))
  return cfg, stage_config(cfg, "finetune", "/work")


def test_each_side_runs_the_finetune_stage_alone_from_init_through_its_solver(tmp_path):
  argv = ["--config", "repro_retrieval.py:T=128", "--init", str(tmp_path), "--steps", "6"]
  for solver in ("scan", "deer"):
    cfg, stage = _stage(argv, solver)
    assert tuple(cfg.pipeline.order) == ("finetune",)
    assert (stage.method, stage.bptt.start, stage.bptt.solver) == ("bptt", "empty", solver)
    assert stage.ckpt.init_from == str(tmp_path) and stage.train.num_steps == 6
    assert (stage.train.eval_every, stage.ckpt.every, stage.log.every) == (6, 6, 1)
    # Without --batch_size the config's batches are kept.
    plain = runner.load_config("repro_retrieval.py:T=128").train
    assert (stage.train.batch_size, stage.train.eval_batches) == (
      plain.batch_size,
      plain.eval_batches,
    )


def test_batch_size_shrinks_the_updates_and_the_closing_read_to_one_batch(tmp_path):
  argv = ["--config", "repro_retrieval.py:T=128", "--init", str(tmp_path), "--batch_size", "8"]
  _, stage = _stage(argv, "deer")
  assert (stage.train.batch_size, stage.train.eval_batch_size, stage.train.eval_batches) == (
    8,
    8,
    1,
  )
