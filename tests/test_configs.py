"""Configs: every experiment config builds and validates; each bad value fails up front with a
message naming the field (in-process, and through experiments/run.py with exit status 1)."""

import ast
import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import load_config

from experiments.configs import parse_int_args
from smt_jax.config import base_config, changed_fields, strict
from smt_jax.data import STREAM_NAMES
from smt_jax.data.prepare import prepare
from smt_jax.errors import ConfigError
from smt_jax.train.pipeline import stage_config, stage_names
from smt_jax.train.validate import validate

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(  # Every config file; the package's other modules (budgets.py) define none.
  p for p in (ROOT / "experiments" / "configs").glob("*.py") if "\ndef get_config(" in p.read_text()
)


def config_module(path: pathlib.Path):
  """The module of a config file of experiments/configs (for its module-level options)."""
  return importlib.import_module(f"experiments.configs.{path.stem}")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_builds_and_validates(path, tmp_path):
  cfg = load_config(path)
  if cfg.data.name in STREAM_NAMES:  # Token streams validate against their prepared files.
    options = getattr(config_module(path), "PREPARE", {})  # e.g. mnist's --size and --levels
    cfg.data.path = str(prepare(cfg.data.name, out=str(tmp_path / "data"), **options))
  if not stage_names(cfg):
    validate(cfg)
  for stage in stage_names(cfg):
    run = stage_config(cfg, stage, tmp_path)
    validate(run, init_from_pending=run.ckpt.init_from.startswith(str(tmp_path)))


BAD = {  # override -> words the message must contain (smoke config: T 16, Tc 8, Tf 4, d 16).
  "model.teacher.Tc=17": "model.teacher.Tc=17 must be in [1, data.T = 16]",
  "model.teacher.Tf=0": "model.teacher.Tf=0 must be in [1, data.T = 16]",
  "dmt.start=-2": "dmt.start=-2 must be -1 (m_empty, before x[0])",
  "dmt.Td=17": "dmt.Td=17 must be <= data.T - 1 - dmt.start = 16",
  "smt.n_t=17": "smt.n_t=17 must be in [0, data.T = 16]",
  "model.num_heads=3": "model.d_model=16 must be divisible by model.num_heads=3",
  "data.name=sudoku": "data.name='sudoku' is unknown",
  "model.rnn.updater=rwkv": "model.rnn.updater='rwkv' is unknown",
  "optim.schedule=linear": "optim.schedule='linear' is unknown",
  "train.trainable=('encoder','memory')": "train.trainable=('encoder', 'memory') names unknown",
  "train.grad_accum=3": "train.batch_size=8 must be divisible by train.grad_accum=3",
  "ckpt.init_from=/nowhere/smt": "ckpt.init_from='/nowhere/smt' holds no checkpoint",
  "ckpt.every=3": "ckpt.every=3 must be a positive multiple of log.every=2",
}


def smoke_with(override: str):
  """The smoke config with one "field=value" override (value a Python literal, else a str)."""
  field, value = override.split("=")
  try:
    value = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    pass
  cfg = strict(load_config("smoke.py"))
  cfg.update_from_flattened_dict({field: value})
  return cfg


@pytest.mark.parametrize("override", BAD)
def test_bad_config_raises_naming_the_field(override):
  with pytest.raises(ConfigError) as e:
    validate(smoke_with(override))
  assert BAD[override] in str(e.value)


def run_launcher(*flags, env=None):
  return subprocess.run(
    [sys.executable, "experiments/run.py", "--config=experiments/configs/smoke.py", *flags],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
  )


@pytest.mark.integration
def test_launcher_exits_1_with_the_message(tmp_path):
  result = run_launcher(f"--workdir={tmp_path}", "--config.model.num_heads=3")
  assert result.returncode == 1
  assert BAD["model.num_heads=3"] in result.stderr
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.integration
def test_launcher_rejects_batch_not_divisible_by_devices(tmp_path):
  result = run_launcher(
    f"--workdir={tmp_path}",
    "--config.train.batch_size=3",
    "--config.train.eval_batch_size=4",
    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 1
  assert "train.batch_size=3 is not divisible by the 2 devices of mesh.data" in result.stderr


def test_config_file_arguments_are_parsed_and_checked():
  assert parse_int_args("T=64, quick=1", {"T": 32, "quick": 0}) == {"T": 64, "quick": 1}
  assert parse_int_args("", {"T": 32}) == {"T": 32}
  with pytest.raises(ConfigError, match="'L' is unknown"):
    parse_int_args("L=64", {"T": 32})
  with pytest.raises(ConfigError, match="not an integer"):
    parse_int_args("T=long", {"T": 32})


def test_full_past_teacher_and_rollouts_from_the_empty_memory_validate():
  """Tc = Tf = T (the paper's m_t = E(x_0..x_t)) and a DMT rollout from m_empty over all T
  tokens are valid; only values past T are not."""
  cfg = smoke_with("model.teacher.Tc=16")
  cfg.model.teacher.Tf, cfg.method, cfg.dmt.start, cfg.dmt.Td, cfg.dmt.k = 16, "dmt", -1, 16, 1
  validate(cfg)
  cfg.dmt.Td, cfg.dmt.random_start = 0, True
  with pytest.raises(ConfigError, match="dmt.Td=0 must be >= 1"):
    validate(cfg)


@pytest.mark.parametrize(
  "name", ["default.py", "repro_retrieval.py", "repro_stack.py", "curriculum.py"]
)
def test_finetune_stage_is_bptt_of_the_dmt_rnn_from_the_empty_memory(name, tmp_path):
  """Stage "finetune" continues the DMT stage's parameters by BPTT that
  starts, and is read, from m_empty; it validates once the DMT stage has run."""
  from smt_jax.objectives import read_start

  cfg = load_config(name)
  cfg.pipeline.order = ("dmt", "finetune", "bptt")
  run = stage_config(cfg, "finetune", tmp_path)
  assert run.method == "bptt" and run.bptt.start == "empty"
  assert run.ckpt.init_from == str(tmp_path / "dmt") and read_start(run) == 0
  validate(run, init_from_pending=True)
  assert read_start(stage_config(cfg, "bptt", tmp_path)) is None  # BPTT from scratch: its init.


@pytest.mark.parametrize(
  "config,arg,bptt,finetune,dmt_lr",
  [
    ("default.py", "", 9000, 4500, 3e-3),  # Hand-picked beside SMT 400 + DMT 1000.
    ("repro_stack.py", "", 8 * (400 + 200), 4 * (400 + 200), 3e-3),
    ("repro_stack.py", "T=128", 8 * (400 + 200), 4 * (400 + 200), 1e-3),
    ("repro_retrieval.py", "T=32", 4 * (400 + 2000), 2 * (400 + 2000), 3e-3),
    ("repro_retrieval.py", "T=64", 14 * (2400 + 2000), 7 * (2400 + 2000), 3e-3),
    ("repro_retrieval.py", "T=128", 14 * (4800 + 2000), 7 * (4800 + 2000), 1e-3),
    ("curriculum.py", "T=64", 6 * (2400 + 2000), 3 * (2400 + 2000), 3e-3),
    ("curriculum.py", "T=256", 6 * (2400 + 200 + 200 + 2000), 3 * (2400 + 200 + 200 + 2000), 1e-3),
  ],
)
def test_each_config_takes_its_budgets_from_the_budget_table(config, arg, bptt, finetune, dmt_lr):
  """BPTT's and fine-tuning's updates and DMT's lr of each comparison's config, by hand from the
  rules of experiments/configs/budgets.py (DMT at a smaller lr from T = 128 on)."""
  st = load_config(config, arg).pipeline.stages
  assert (st.bptt.train.num_steps, st.finetune.train.num_steps) == (bptt, finetune)
  assert st.dmt.optim.lr == dmt_lr


def test_changed_fields_names_the_shared_fields_whose_values_differ():
  """Against a hand-edited saved config: a changed value and a changed tuple are named with both
  values; a field only one side has (the schema grew or shrank) and an equal tuple saved as a
  JSON list are not."""
  saved = json.loads(base_config().to_json_best_effort())
  saved["model"]["d_model"] += 8
  saved["eval"]["sections"] = ["read"]
  del saved["model"]["teacher"]["Tf"]
  saved["model"]["retired_field"] = 3
  cfg = base_config()
  cfg.eval.sections = ("read", "drift")
  assert changed_fields(saved, cfg) == {
    "model.d_model": (cfg.model.d_model + 8, cfg.model.d_model),
    "eval.sections": (["read"], ["read", "drift"]),
  }
  assert changed_fields(json.loads(cfg.to_json_best_effort()), cfg) == {}
