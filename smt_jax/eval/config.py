"""The `eval` config group (its fields live in smt_jax.config.base_config), made concrete."""

import jax
import ml_collections

from smt_jax.data.synthetic import has_answer_sources
from smt_jax.errors import ConfigError
from smt_jax.objectives import encoder_prefix, method_of

SECTIONS = ("read", "drift", "length", "write", "lags", "carry", "state")
OPT_IN = ("carry", "state")  # Sections run only where eval.sections names them.
# Folded into key(eval.seed) before anything else: the final evaluation's sequences come from a
# derivation that neither the training keys (split from key(seed)) nor the validation keys take,
# and from the dataset's "test" split, which folds its own constant in turn.
TEST_STREAM = 0x7E57


def final_eval_key(seed: int) -> jax.Array:
  """The root key of the final evaluation's test sequences (eval.seed): every section and
  `experiments/remeasure.py` fold their own constants into it."""
  return jax.random.fold_in(jax.random.key(seed), TEST_STREAM)


def image_pixels(dataset) -> int:
  """H * W when the dataset decodes to images, else 0."""
  return getattr(getattr(dataset, "tokenizer", None), "pixels", 0)


def final_eval_batches(ds, seed: int, section: str, length: int, num: int, batch_size: int):
  """`num` batches of (batch_size, length) of `ds` (the "test" split), a pure function of
  (seed, section, i): each section of SECTIONS draws from its own key, folded into
  `final_eval_key(seed)`."""
  key = jax.random.fold_in(final_eval_key(seed), SECTIONS.index(section))
  for i in range(num):
    yield ds.sample(jax.random.fold_in(key, i), batch_size, length)


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def resolve_eval(cfg: ml_collections.ConfigDict, pixels: int = 0) -> ml_collections.ConfigDict:
  """cfg.eval with every derived field made concrete.

  Args:
    cfg: a run's config.
    pixels: H * W for pixel data (rounds write_length up to whole images), else 0.
  Returns:
    A copy of cfg.eval with prefix (`encoder_prefix`), T, drift_steps, lengths, write_length
    and sections resolved (a method without an RNN, the Transformer LM, has no drift section:
    it has no memory to drift; "lags" by default only where it is defined; OPT_IN sections
    only where named).
  Raises:
    ConfigError naming the eval field when a value cannot work.
  """
  e = ml_collections.ConfigDict(cfg.eval.to_dict())
  train_T = cfg.data.T
  e.T = e.T or train_T
  e.prefix = encoder_prefix(cfg)
  e.drift_steps = e.drift_steps or train_T
  e.lengths = tuple(int(n) for n in e.lengths) or (train_T, 2 * train_T, 4 * train_T)
  e.write_length = e.write_length or e.T - e.prefix
  if pixels:
    e.write_length = -(-(e.prefix + e.write_length) // pixels) * pixels - e.prefix
  method = method_of(cfg)
  has_teacher = method.has_teacher
  # Accuracy by lag reads an RNN on a task whose answers repeat one input token.
  lags = method.recurrent and has_answer_sources(cfg.data.name)
  sections = tuple(e.sections) or tuple(
    n
    for n in SECTIONS
    if (n != "drift" or has_teacher) and (n != "lags" or lags) and n not in OPT_IN
  )
  if not method.recurrent:  # The Transformer LM baseline has no memory to drift.
    sections = tuple(n for n in sections if n != "drift") or ("read",)
  _require(
    bool(sections) and set(sections) <= set(SECTIONS),
    f"eval.sections={tuple(e.sections)} must name some of {SECTIONS}.",
  )
  _require(
    "lags" not in sections or lags,
    f"eval.sections names 'lags' but data.name={cfg.data.name!r} with method={cfg.method!r} "
    "has no accuracy by lag: it needs an RNN on a synthetic task whose answers repeat one "
    "input token (smt_jax.data.synthetic.has_answer_sources); drop 'lags'.",
  )
  _require(
    "carry" not in sections or (has_teacher and method.recurrent),
    f"eval.sections names 'carry' but method={cfg.method!r} has no encoder to start the "
    "updater from: it needs a method with a teacher (smt, dmt); drop 'carry'.",
  )
  _require(
    "state" not in sections or (method.recurrent and cfg.data.name == "stack"),
    f"eval.sections names 'state' but data.name={cfg.data.name!r} with method={cfg.method!r} "
    "has no stack to probe: it needs an RNN on data.name='stack'; drop 'state'.",
  )
  e.sections = tuple(name for name in SECTIONS if name in sections)
  _require(e.chunk >= 0, f"eval.chunk={e.chunk} must be >= 0 (0 = all positions at once).")
  _require(e.batch_size >= 1, f"eval.batch_size={e.batch_size} must be >= 1.")
  _require(e.num_batches >= 1, f"eval.num_batches={e.num_batches} must be >= 1.")
  _require(e.num_samples >= 1, f"eval.num_samples={e.num_samples} must be >= 1.")
  limit = min(e.T, train_T) - 1
  _require(
    1 <= e.prefix <= limit,
    f"eval.prefix={e.prefix} must be in [1, min(eval.T, data.T) - 1 = {limit}] (-1 = Tc, or "
    "T // 2 when Tc >= T).",
  )
  _require(e.drift_steps >= 1, f"eval.drift_steps={e.drift_steps} must be >= 1 (0 = data.T).")
  _require(all(n >= 1 for n in e.lengths), f"eval.lengths={e.lengths} must all be >= 1.")
  _require(e.write_length >= 1, f"eval.write_length={e.write_length} must be >= 1.")
  _require(e.temperature >= 0, f"eval.temperature={e.temperature} must be >= 0 (0 = greedy).")
  _require(e.top_k >= 0, f"eval.top_k={e.top_k} must be >= 0 (0 = all tokens).")
  return e
