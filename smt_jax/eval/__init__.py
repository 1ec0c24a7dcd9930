"""Evaluation of trained teachers and RNNs: read, write, drift and length generalisation.

    summary = smt_jax.eval.evaluate(cfg, params, workdir)   # eval.json + PNGs in workdir
    print(smt_jax.eval.format_table(summary))

Knobs live in `cfg.eval` (documented in smt_jax.config.base_config).
"""

from smt_jax.eval.config import resolve_eval
from smt_jax.eval.drift import drift_stats, rnn_step_fn
from smt_jax.eval.read import (
  add_stats,
  position_stats,
  rnn_memories,
  rnn_read_stats,
  summarize,
  teacher_read_stats,
)
from smt_jax.eval.suite import evaluate, evaluate_workdir, format_table, load_run_config
from smt_jax.eval.write import sample_logits, sample_rnn, write_samples

__all__ = [
  "resolve_eval",
  "drift_stats",
  "rnn_step_fn",
  "evaluate",
  "evaluate_workdir",
  "format_table",
  "load_run_config",
  "add_stats",
  "position_stats",
  "rnn_memories",
  "rnn_read_stats",
  "summarize",
  "teacher_read_stats",
  "sample_logits",
  "sample_rnn",
  "write_samples",
]
