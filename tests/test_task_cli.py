"""Tasks from the command line: `--config.data.name=X` resets data.kwargs to X's defaults,
`--config.data.kwargs.KNOB=V` sets any knob of the chosen task, an unknown knob names the task's
knobs; a task's length rule (its `check_length`) is checked by validation before anything compiles:
one line, exit 1, nothing written."""

import os
import pathlib
import subprocess
import sys

import jax
import pytest

from experiments import cli, run
from experiments.configs import default, smoke
from smt_jax.data import knobs, make_dataset, parse_knob
from smt_jax.data.synthetic import Copy, KeysValues
from smt_jax.errors import ConfigError
from smt_jax.train.validate import validate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_switching_task_resets_knobs_to_its_defaults():
  file_cfg = default.get_config()  # Retrieval with pos_lo, pos_hi.
  rest, kwargs = cli.task_knobs(["run.py", "--config.data.name=stack", "--workdir=w"], file_cfg)
  assert rest == ["run.py", "--config.data.name=stack", "--workdir=w"]
  assert kwargs.to_dict() == {"depth": 8, "p_push": 0.5}  # Stack's dataclass defaults.


def test_knobs_of_another_task_than_the_files():
  argv = ["run.py", "--config.data.name", "copy", "--config.data.kwargs.reverse=True"]
  rest, kwargs = cli.task_knobs(argv + ["--config.data.kwargs.length", "5"], default.get_config())
  assert rest == argv[:3]
  assert kwargs.to_dict() == {"length": 5, "reverse": True}
  _, kwargs = cli.task_knobs(
    ["run.py", "--config.data.name=copy", "--config.data.kwargs.reverse"], default.get_config()
  )
  assert kwargs.reverse is True
  _, kwargs = cli.task_knobs(
    ["run.py", "--config.data.name=copy", "--noconfig.data.kwargs.reverse"], default.get_config()
  )
  assert kwargs.reverse is False


def test_same_task_keeps_the_files_knobs_and_adds_others():
  file_cfg = smoke.get_config()  # Retrieval, data.kwargs empty.
  _, kwargs = cli.task_knobs(["run.py", "--config.data.kwargs.pos_hi=0.25"], file_cfg)
  assert kwargs.to_dict() == {"pos_hi": 0.25}
  _, kwargs = cli.task_knobs(["run.py", "--config.data.name=retrieval"], default.get_config())
  assert kwargs.to_dict() == {"pos_lo": 0.4, "pos_hi": 0.5}  # default.py's, not reset.


@pytest.mark.parametrize(
  "argv, fragment",
  [
    (["--config.data.name=copy", "--config.data.kwargs.pos_hi=0.3"], "The knobs of 'copy': "),
    (["--config.data.name=copy", "--config.data.kwargs.reverse=maybe"], "expected bool"),
    (["--config.data.name=stack", "--config.data.kwargs.depth=2.5"], "expected int"),
    (["--config.data.name=nope"], "data.name='nope' is unknown"),
  ],
)
def test_bad_knobs(argv, fragment):
  with pytest.raises(ConfigError, match=fragment) as e:
    cli.task_knobs(["run.py", *argv], default.get_config())
  if "knobs of" in fragment:  # Every knob of the chosen task is named.
    assert all(name in str(e.value) for name in knobs("copy"))


def test_parse_knob_types():
  assert parse_knob("keys_values", "disjoint", "true") is True
  assert parse_knob("modular", "coef_frac", "0.2") == pytest.approx(0.2)
  assert parse_knob("stack", "depth", "12") == 12
  with pytest.raises(ValueError, match="The knobs of 'parity': final_only"):
    parse_knob("parity", "depth", "3")


def test_length_rule_is_the_generators_and_validations():
  """One rule: `sample` refuses the T that validation refuses, with the same bound."""
  task = KeysValues(8)  # 8 pairs of 2 + 2 tokens and the query: T >= 36.
  cfg = smoke.get_config()
  cfg.data.name, cfg.data.kwargs = "keys_values", knobs("keys_values")
  for T, ok in ((35, False), (36, True)):
    cfg.data.T, cfg.model.teacher.Tc = T, 8
    if ok:
      validate(cfg)
      assert task.sample(jax.random.key(0), 2, T)["x"].shape == (2, T)
      continue
    with pytest.raises(ConfigError, match=r"data.T=35 is too short .* needs data.T >= 36"):
      validate(cfg)
    with pytest.raises(ValueError, match=r"T=35 is too short .* needs T >= 36"):
      task.sample(jax.random.key(0), 2, T)


def test_length_rule_at_the_final_evaluations_lengths():
  cfg = smoke.get_config()
  cfg.data.name, cfg.data.T = "copy", 16
  cfg.data.kwargs = {"length": 8, "reverse": True}  # Needs T >= 16.
  cfg.eval.sections, cfg.eval.lengths = ("length",), (16, 12)
  with pytest.raises(ConfigError, match="eval.lengths=12 is too short"):
    validate(cfg)
  cfg.train.final_eval = False  # No final evaluation: its lengths do not matter.
  validate(cfg)
  assert make_dataset(cfg.data).check_length(16) is None
  assert Copy(8, length=8).min_length() == 16


def _launch(tmp_path, *args):
  return run.main(
    ["run.py", "--config=experiments/configs/smoke.py", f"--workdir={tmp_path / 'wd'}", *args]
  )


@pytest.mark.integration
def test_launcher_in_process(tmp_path, capsys, monkeypatch):
  """Through experiments/run.py's own main: the length rule and a bad knob fail before training;
  knobs of another task reach the config the run trains with."""
  from smt_jax.train import loop

  seen = {}

  def no_training(self, *args):
    seen["data"] = self.cfg.data.to_dict()
    raise KeyboardInterrupt  # Stops the run before anything compiles.

  monkeypatch.chdir(ROOT)
  monkeypatch.setattr(loop._Run, "train", no_training)
  for argv, fragment in (
    (["--config.data.name=keys_values"], "data.T=16 is too short for task 'keys_values'"),
    (["--config.data.name=copy", "--config.data.kwargs.depth=3"], "The knobs of 'copy'"),
  ):
    capsys.readouterr()
    assert _launch(tmp_path, *argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "wd").exists()
  _launch(tmp_path, "--config.data.name=copy", "--config.data.kwargs.reverse=True")
  assert seen["data"]["name"] == "copy"
  assert seen["data"]["kwargs"] == {"length": 0, "reverse": True}


def _process(tmp_path, *args):
  return subprocess.run(
    [
      sys.executable,
      "experiments/run.py",
      f"--workdir={tmp_path / 'wd'}",
      *args,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"},
  )


@pytest.mark.integration
def test_length_rule_as_a_process(tmp_path):
  """The issue's command: exit 1, one line, nothing written (no config.json, no checkpoints/)."""
  result = _process(
    tmp_path, "--config=experiments/configs/smoke.py", "--config.data.name=keys_values"
  )
  assert result.returncode == 1, result.stderr
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]
  assert "data.T=16 is too short for task 'keys_values'" in result.stderr
  assert "needs data.T >= 36" in result.stderr
  assert not (tmp_path / "wd").exists()


@pytest.mark.integration
def test_knobs_of_another_task_as_a_process(tmp_path):
  """default.py is written for retrieval: stack and copy's knobs pass the command line (the run
  then stops at a later field's validation, before anything compiles); an unknown knob names
  copy's."""
  for task in (
    ["--config.data.name=stack"],
    ["--config.data.name=copy", "--config.data.kwargs.reverse=True"],
  ):
    result = _process(
      tmp_path, "--config=experiments/configs/default.py", *task, "--config.train.batch_size=0"
    )
    assert result.returncode == 1 and "train.batch_size=0 must be >= 1" in result.stderr, (
      result.stderr
    )
  result = _process(
    tmp_path,
    "--config=experiments/configs/default.py",
    "--config.data.name=copy",
    "--config.data.kwargs.pos_hi=0.3",
  )
  assert result.returncode == 1
  assert "The knobs of 'copy': length, reverse" in result.stderr
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]
  assert not (tmp_path / "wd").exists()
