"""Shared test fixtures: tiny configs and batches that compile in seconds on a CPU, and one JAX
compilation cache for the whole run."""

import collections
import os
import pathlib

# The tests compile hundreds of small programs and run each a few times: LLVM's optimisation
# passes cost more than they save there (the recorded golden values hold at either level). Set
# before JAX starts its CPU backend; child processes inherit it.
os.environ["XLA_FLAGS"] = " ".join(
  [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
).strip()

import jax  # noqa: E402
import jax.numpy as jnp
import pytest

from experiments.cli import load_config_file
from smt_jax.config import base_config, strict

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"


def load_config(name, arg: str = ""):
  """get_config(arg) of experiments/configs/NAME (or of the config file at a path), loaded as
  experiments/run.py loads --config=FILE:ARG."""
  return load_config_file(f"{CONFIGS / name}" + (f":{arg}" if arg else ""))


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent compilation cache for every test of the run, shared by pytest-xdist's workers
  (in the run's temporary folder) and handed to child processes (JAX_COMPILATION_CACHE_DIR): a
  program that many tests build (the tiny config's train step, a model's apply) compiles once.
  A JAX_COMPILATION_CACHE_DIR set by the caller is used instead (e.g. kept between runs)."""
  if not jax.config.jax_compilation_cache_dir:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
      base = base.parent  # The run's folder, above each worker's own.
    jax.config.update("jax_compilation_cache_dir", str(base / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


def make_tiny_config(**overrides):
  """A config small enough for Python-loop references: d 8, K 2 (Z 16), T 8, Tc 4, Tf 3, V 7.

  `overrides` maps dotted field names to values, e.g. {"model.rnn.updater": "gru"}.
  """
  cfg = base_config()
  cfg.data.vocab_size = 7
  cfg.data.T = 8
  cfg.model.d_model = 8
  cfg.model.num_heads = 2
  cfg.model.mlp_ratio = 2
  cfg.model.mem_tokens = 2
  cfg.model.teacher.encoder_depth = 1
  cfg.model.teacher.decoder_depth = 1
  cfg.model.teacher.Tc = 4
  cfg.model.teacher.Tf = 3
  cfg.model.rnn.depth = 1
  cfg.model.rnn.hidden = 12
  cfg.model.rnn.readout_depth = 1
  cfg.smt.unif_tokens = 10_000
  cfg.dmt.Td = 5
  cfg.dmt.k = 2
  cfg = strict(cfg)
  cfg.update_from_flattened_dict(overrides)
  return cfg


@pytest.fixture
def tiny_config():
  return make_tiny_config


def random_batch(key, batch_size, length, vocab_size, label_every=2):
  """Random tokens; y is the next token at every `label_every`-th position, -1 elsewhere."""
  x = jax.random.randint(key, (batch_size, length + 1), 0, vocab_size)
  y = jnp.where(jnp.arange(length) % label_every == 0, x[:, 1:], -1)
  return {"x": x[:, :-1], "y": y}


class CompiledModels:
  """`build_models(cfg)` with encode, decode, step and read each jitted, for the Python-loop
  references: they call these once per position with one shape each, and a compiled call runs
  faster than the same ops dispatched one by one (the loop is still the reference)."""

  def __init__(self, cfg):
    from smt_jax.models import build_models

    self._models = build_models(cfg)
    for name in ("encode", "decode", "step", "read"):
      setattr(self, name, jax.jit(getattr(self._models, name)))

  def __getattr__(self, name):
    return getattr(self._models, name)


def modular_optimal_guesses(x, y, V, coef_frac, recent_pairs=None, **_):
  """The Bayes-optimal guesses of modular arithmetic by a Python loop: at each answer, votes of
  the maps (w, b) that agree with every earlier pair (or the last `recent_pairs` of them), the
  lowest value winning a tie; sure where one value has every vote.
  {"hit": [bool] * T, "sure": [bool] * T}."""
  C = int(coef_frac * V)
  out = {"hit": [], "sure": []}
  for t in range(len(x)):
    if t % 2:
      out["hit"].append(False)
      out["sure"].append(False)
    else:
      first = 0 if recent_pairs is None else max(0, t - 2 * recent_pairs)
      seen = [(x[j], x[j + 1]) for j in range(first, t, 2)]
      maps = [(w, b) for w in range(1, C) for b in range(C)]
      alive = [(w, b) for w, b in maps if all((w * u + b) % V == f for u, f in seen)]
      votes = collections.Counter((w * x[t] + b) % V for w, b in alive)
      best = min(votes, key=lambda f: (-votes[f], f))
      out["hit"].append(y[t] >= 0 and best == y[t])
      out["sure"].append(y[t] >= 0 and len(votes) == 1)
  return out
