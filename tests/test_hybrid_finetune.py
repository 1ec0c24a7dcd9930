"""experiments/bench/hybrid_finetune.py: the update-by-update comparison of a fine-tune through
lax.scan with the same fine-tune through a Newton rollout, on hand-written metrics rows."""

import json

from experiments.bench import hybrid_finetune


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
