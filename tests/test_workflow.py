"""A researcher's workflow around a trained run: command-line overrides of pipeline configs."""

import pathlib

import pytest

from experiments import run
from experiments.cli import load_config_file
from smt_jax.errors import ConfigError
from smt_jax.train.pipeline import check_overrides, stage_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"


@pytest.mark.parametrize("name", ["default", "kjv", "curriculum"])
def test_a_field_every_stage_sets_is_refused_naming_the_stage_fields(name):
  cfg = load_config_file(str(CONFIGS / f"{name}.py"))
  stages = [s for s in cfg.pipeline.order if "num_steps" in cfg.pipeline.stages[s].train]
  assert stages
  with pytest.raises(ConfigError) as e:
    check_overrides(cfg, {"train.num_steps": 3})
  for s in stages:
    assert f"pipeline.stages.{s}.train.num_steps" in str(e.value)
  assert "\n" not in str(e.value)


def test_a_field_no_stage_sets_applies_to_every_stage():
  cfg = load_config_file(str(CONFIGS / "default.py"))
  check_overrides(cfg, {"train.batch_size": 4, "pipeline.stages.smt.train.num_steps": 3})
  cfg.train.batch_size = 4
  for s in cfg.pipeline.order:
    assert stage_config(cfg, s, "/tmp/unused").train.batch_size == 4


def test_a_field_is_accepted_once_each_stage_that_sets_it_is_set_too():
  cfg = load_config_file(str(CONFIGS / "default.py"))  # Only the DMT stage sets optim.lr.
  with pytest.raises(ConfigError, match=r"pipeline\.stages\.dmt\.optim\.lr"):
    check_overrides(cfg, {"optim.lr": 1e-3})
  check_overrides(cfg, {"optim.lr": 1e-3, "pipeline.stages.dmt.optim.lr": 3e-4})


def test_launcher_refuses_with_one_line_and_writes_nothing(tmp_path, capsys):
  workdir = tmp_path / "wd"
  argv = [
    "run.py",
    f"--config={CONFIGS / 'kjv.py'}",
    f"--workdir={workdir}",
    "--config.train.num_steps=3",
  ]
  assert run.main(argv) == 1
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and err.startswith("error: --config.train.num_steps")
  assert "--config.pipeline.stages.smt.train.num_steps=3" in err
  assert not workdir.exists()
