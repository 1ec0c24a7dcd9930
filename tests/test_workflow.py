"""A researcher's workflow around a trained run: command-line overrides of pipeline configs,
merged evaluations, dry runs, progress lines without a terminal."""

import io
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import pytest
from conftest import make_tiny_config

from experiments import evaluate as evaluate_cli
from experiments import run
from experiments.cli import load_config_file
from smt_jax import checkpointing
from smt_jax.config import strict
from smt_jax.errors import ConfigError
from smt_jax.eval import evaluate
from smt_jax.models import init_params
from smt_jax.train import train_and_evaluate
from smt_jax.train.metrics import ProgressLog, format_duration, read_metrics
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


def save_run(workdir: pathlib.Path, cfg, step: int = 3) -> dict:
  """A run's workdir as the trainer leaves it: config.json and a checkpoint of fresh params."""
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2))
  ckpt = checkpointing.Checkpointer(workdir / checkpointing.SUBDIR)
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  ckpt.save(step, params, {"count": jnp.zeros((), jnp.int32)})
  ckpt.close()
  return params


def small_eval(cfg, sections):
  cfg.eval.update({"batch_size": 2, "num_batches": 1, "num_samples": 2, "lengths": (8,)})
  cfg.eval.sections = sections
  return cfg


def test_a_second_partial_evaluation_keeps_the_first_sections(tmp_path):
  cfg = make_tiny_config()
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  first = evaluate(small_eval(cfg, ("read", "length")), params, str(tmp_path), 5)
  second = evaluate(small_eval(cfg, ("write",)), params, str(tmp_path), 5)
  on_disk = json.loads((tmp_path / "eval.json").read_text())
  assert on_disk == second
  assert on_disk["read"] == first["read"] and on_disk["length"] == first["length"]
  assert on_disk["write"]["file"] == "samples.txt"
  assert on_disk["files"] == ["eval.json", "read.png", "length.png", "samples.txt"]
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".eval.json")]  # no temp left
  third = evaluate(small_eval(cfg, ("write",)), params, str(tmp_path), 6)  # another checkpoint
  assert "read" not in third and json.loads((tmp_path / "eval.json").read_text()) == third


def test_evaluate_on_a_pipeline_folder_evaluates_each_trained_stage(tmp_path, capsys):
  cfg = make_tiny_config()
  pipeline = strict(cfg)
  pipeline.pipeline.order = ("smt", "dmt")
  pipeline.pipeline.stages = ml_collections.ConfigDict({"smt": {}, "dmt": {"method": "dmt"}})
  tmp_path.joinpath("config.json").write_text(pipeline.to_json_best_effort(indent=2))
  argv = ["evaluate.py", f"--workdir={tmp_path}", "--config.eval.sections=('write',)"]
  argv += ["--config.eval.num_samples=2"]
  assert evaluate_cli.main(argv) == 1
  err = capsys.readouterr().err
  assert "is a pipeline folder; its stages are smt, dmt" in err and f"{tmp_path}/STAGE" in err
  save_run(tmp_path / "smt", cfg)
  assert evaluate_cli.main(argv) == 0
  assert (tmp_path / "smt" / "samples.txt").is_file() and not (tmp_path / "dmt").exists()
  assert "stage smt:" in capsys.readouterr().err


def test_dry_run_prints_each_stage_resolved_and_writes_nothing(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(run, "run_pipeline", lambda *a: pytest.fail("a dry run trained"))
  workdir = tmp_path / "wd"
  argv = ["run.py", f"--config={CONFIGS / 'default.py'}", f"--workdir={workdir}", "--dry_run"]
  assert run.main(argv + ["--config.pipeline.stages.dmt.train.num_steps=7"]) == 0
  out = capsys.readouterr().out
  cfg = load_config_file(str(CONFIGS / "default.py"))
  blocks = out.split("=== stage ")[1:]
  assert [b.split(":")[0] for b in blocks] == list(cfg.pipeline.order)
  for stage, block in zip(cfg.pipeline.order, blocks):
    steps = 7 if stage == "dmt" else cfg.pipeline.stages[stage].train.num_steps
    assert f"\n  num_steps: {steps}\n" in block
  assert f"init_from: {workdir / 'smt'}" in blocks[1]
  assert not workdir.exists()
  assert run.main(argv + ["--config.pipeline.stages.dmt.optim.lr=-1.0"]) == 1
  assert "optim.lr=-1.0 must be > 0" in capsys.readouterr().err
  assert not workdir.exists()


def test_help_names_every_config_file(capsys):
  assert run.main(["run.py", "--help"]) == 0
  out = capsys.readouterr().out
  for path in CONFIGS.glob("*.py"):
    assert (path.name in out) == (path.name != "__init__.py"), path.name


def test_progress_lines_follow_a_fake_clock():
  clock, out, asked = [0.0], io.StringIO(), []
  progress = ProgressLog("smt run", 10, 0, 5.0, out, lambda: clock[0])
  for step in range(1, 11):
    clock[0] = 2.0 * step  # One update every 2 s: 0.5 updates/s.
    progress.update(step, lambda step=step: asked.append(step) or 1.0 / step)
  assert asked == [3, 6, 9]  # A line once 5 s have passed since the last (6 s, 12 s, 18 s).
  assert out.getvalue().splitlines() == [
    "smt run: step 3/10 (30%), 0.5 updates/s, loss 0.3333, ETA 14s",
    "smt run: step 6/10 (60%), 0.5 updates/s, loss 0.1667, ETA 8s",
    "smt run: step 9/10 (90%), 0.5 updates/s, loss 0.1111, ETA 2s",
  ]
  assert [format_duration(s) for s in (59.9, 185, 7620)] == ["59s", "3m05s", "2h07m"]


def test_a_run_without_a_terminal_prints_progress_lines(tmp_path, capsys):
  cfg = make_tiny_config(
    **{
      "method": "bptt",
      "train.num_steps": 3,
      "train.batch_size": 2,
      "train.eval_batches": 1,
      "train.eval_batch_size": 2,
      "log.every": 1,
      "ckpt.every": 3,
      "log.plot": False,
      "train.final_eval": False,
      "log.progress_every_s": 1e-9,  # A line after every update.
    }
  )
  train_and_evaluate(cfg, tmp_path)
  lines = [ln for ln in capsys.readouterr().err.splitlines() if ": step " in ln]
  losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl", "train")]
  assert len(lines) == 3 and len(losses) == 3
  for step, (line, loss) in enumerate(zip(lines, losses), 1):
    assert f": step {step}/3 " in line and f"loss {loss:.4f}, ETA " in line
