"""The `eval` config group: its fields, defaults, and their resolution against a run's config."""

import ml_collections

from smt_jax.config import ConfigError

SECTIONS = ("read", "drift", "length", "write")


def default_eval_config() -> ml_collections.ConfigDict:
  """Evaluation knobs; 0 / -1 / () mean "derive from the run's config" (see `resolve_eval`)."""
  e = ml_collections.ConfigDict()
  e.sections = ""  # Comma-separated parts to run (read, drift, length, write); "" = all, but
  #                  no drift for bptt (it trains no encoder to drift from).
  e.seed = 0  # Seeds the test batches and the samples.
  e.batch_size = 16  # Sequences per evaluation batch.
  e.num_batches = 4  # Batches averaged by read, drift and length generalisation.
  e.T = 0  # Length of the read sequences; 0 = data.T.
  e.chunk = 256  # Positions the teacher re-encodes at once (bounds memory on long sequences);
  #               0 = all.
  e.prefix = -1  # P, tokens the encoder reads before the RNN takes over (read, write); -1 = Tc.
  e.drift_steps = 0  # RNN updates after the encoder memory at Tc - 1; 0 = data.T - Tc.
  e.lengths = ()  # Sequence lengths of length generalisation; () = (T, 2T, 4T) for T = data.T.
  e.num_samples = 8  # Sequences written by the RNN per start (encoder prefix, scratch).
  e.write_length = 0  # Tokens the RNN writes after the prefix; 0 = T - P (pixel data: rounded
  #                     up so that prompt + samples are whole images).
  e.temperature = 1.0  # Sampling temperature; 0 = greedy.
  e.top_k = 0  # Sample among the k most likely tokens; 0 = all.
  return e


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def resolve_eval(cfg: ml_collections.ConfigDict, pixels: int = 0) -> ml_collections.ConfigDict:
  """cfg.eval (or the defaults where the run has none) with every derived field made concrete.

  Args:
    cfg: a run's config (data.T, model.teacher.Tc, optional eval group).
    pixels: H * W for pixel data (rounds write_length up to whole images), else 0.
  Raises:
    ConfigError naming the eval field when a value cannot work.
  """
  e = default_eval_config()
  e.update(dict(cfg.get("eval") or {}))
  train_T, tc = cfg.data.T, cfg.model.teacher.Tc
  e.T = e.T or train_T
  e.prefix = tc if e.prefix == -1 else e.prefix
  e.drift_steps = e.drift_steps or train_T - tc
  e.lengths = tuple(int(n) for n in e.lengths) or (train_T, 2 * train_T, 4 * train_T)
  e.write_length = e.write_length or e.T - e.prefix
  if pixels:
    e.write_length = -(-(e.prefix + e.write_length) // pixels) * pixels - e.prefix
  default_sections = [n for n in SECTIONS if n != "drift" or cfg.get("method") != "bptt"]
  sections = [name.strip() for name in e.sections.split(",") if name.strip()] or default_sections
  _require(bool(sections) and set(sections) <= set(SECTIONS),
           f"eval.sections={e.sections!r} must name some of {', '.join(SECTIONS)}.")
  e.sections = ",".join(name for name in SECTIONS if name in sections)
  _require(e.chunk >= 0, f"eval.chunk={e.chunk} must be >= 0 (0 = all positions at once).")
  _require(e.batch_size >= 1, f"eval.batch_size={e.batch_size} must be >= 1.")
  _require(e.num_batches >= 1, f"eval.num_batches={e.num_batches} must be >= 1.")
  _require(e.num_samples >= 1, f"eval.num_samples={e.num_samples} must be >= 1.")
  _require(1 <= e.prefix < e.T,
           f"eval.prefix={e.prefix} must be in [1, eval.T - 1 = {e.T - 1}] (-1 = Tc = {tc}).")
  _require(e.drift_steps >= 1, f"eval.drift_steps={e.drift_steps} must be >= 1 (0 = data.T - Tc).")
  _require(all(n >= 1 for n in e.lengths), f"eval.lengths={e.lengths} must all be >= 1.")
  _require(e.write_length >= 1, f"eval.write_length={e.write_length} must be >= 1.")
  _require(e.temperature >= 0, f"eval.temperature={e.temperature} must be >= 0 (0 = greedy).")
  _require(e.top_k >= 0, f"eval.top_k={e.top_k} must be >= 0 (0 = all tokens).")
  return e
