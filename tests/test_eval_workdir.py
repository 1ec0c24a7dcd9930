"""End to end: `evaluate` writes every file, for token tasks (smoke checkpoint) and pixel data."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config, make_tiny_config

from smt_jax.eval import evaluate, evaluate_workdir
from smt_jax.models import init_params

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL_EVAL = {
  "eval.batch_size": 2,
  "eval.num_batches": 1,
  "eval.num_samples": 2,
  "eval.lengths": (16,),
}


def check_outputs(workdir: pathlib.Path, summary: dict, files: list) -> dict:
  assert summary["files"] == files
  for name in summary["files"]:
    assert (workdir / name).stat().st_size > 0, name
  on_disk = json.loads((workdir / "eval.json").read_text())
  assert on_disk == summary
  return on_disk


@pytest.mark.integration
def test_evaluate_workdir_on_a_smoke_checkpoint(tmp_path):
  from smt_jax import checkpointing

  cfg = load_config("smoke.py")
  (tmp_path / "config.json").write_text(cfg.to_json_best_effort(indent=2))
  ckpt = checkpointing.Checkpointer(tmp_path / checkpointing.SUBDIR)
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  ckpt.save(3, params, {"count": jnp.zeros((), jnp.int32)})
  ckpt.close()

  summary = evaluate_workdir(str(tmp_path), {**SMALL_EVAL, "eval.prefix": 8})
  s = check_outputs(
    tmp_path, summary, ["eval.json", "read.png", "drift.png", "length.png", "samples.txt"]
  )
  assert s["step"] == 3
  assert s["eval"]["prefix"] == 8 and s["eval"]["batch_size"] == 2
  assert set(s["read"]["curves"]) == {
    "rnn from encoder prefix 8",
    "rnn from x[0] (m_empty)",
    "teacher",
  }
  assert all(c["num_labels"] == 2 for c in s["read"]["curves"].values())  # retrieval: 1 per row
  assert len(s["drift"]["drift"]) == len(s["drift"]["one_step"]) == cfg.data.T  # from m_empty
  assert s["length"]["lengths"] == [16] and len(s["length"]["teacher_acc"]) == 1
  assert (tmp_path / "samples.txt").read_text().count("=== sample") == 2


def write_pixel_stream(directory: pathlib.Path, height: int, width: int, images: int) -> None:
  """A prepared 'digits' stream of random images, in the layout smt_jax.data.prepare writes."""
  directory.mkdir()
  (directory / "meta.json").write_text(
    json.dumps({"name": "digits", "kind": "pixels", "image_shape": [height, width]})
  )
  pixels = np.random.default_rng(0).integers(0, 256, images * height * width).astype(np.uint8)
  for split in ("train", "test"):
    np.save(directory / f"{split}.npy", pixels)


@pytest.mark.integration
def test_evaluate_draws_an_image_grid_of_samples_for_pixel_data(tmp_path):
  cfg = make_tiny_config(
    **{"data.name": "digits", "data.vocab_size": 256, "data.path": str(tmp_path / "digits")}
  )
  write_pixel_stream(tmp_path / "digits", 2, 4, images=20)  # T = 8: one 2x4 image
  cfg.eval.update({"sections": ("write",), "num_samples": 3, "prefix": 2, "temperature": 0.0})
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  summary = evaluate(cfg, params, str(tmp_path / "run"))
  s = check_outputs(tmp_path / "run", summary, ["eval.json", "samples.png"])
  assert (s["write"]["prompt"] + s["write"]["length"]) % 8 == 0  # whole 2x4 images


@pytest.mark.integration
@pytest.mark.slow
def test_command_line_after_a_real_smoke_run(tmp_path):
  env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
  run = lambda *args: subprocess.run(
    [sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
  )
  run("experiments/run.py", "--config=experiments/configs/smoke.py", f"--workdir={tmp_path}")
  out = run(
    "experiments/evaluate.py",
    f"--workdir={tmp_path}",
    "--config.eval.num_batches=1",
    "--config.eval.temperature=0",
  ).stdout
  assert "length generalisation" in out
  s = json.loads((tmp_path / "eval.json").read_text())
  assert s["eval"]["temperature"] == 0.0 and s["step"] == load_config("smoke.py").train.num_steps
  for name in s["files"]:
    assert (tmp_path / name).is_file(), name


@pytest.mark.integration
def test_evaluate_reports_the_rnn_alone_for_bptt(tmp_path):
  cfg = make_tiny_config(method="bptt")
  cfg.eval.update({"batch_size": 2, "num_batches": 1, "num_samples": 2, "lengths": (8,)})
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(0))
  s = check_outputs(
    tmp_path,
    evaluate(cfg, params, str(tmp_path)),
    ["eval.json", "read.png", "length.png", "samples.txt"],
  )  # no teacher to drift from
  assert list(s["read"]["curves"]) == ["rnn from x[0] (initial memory)"]
  assert "teacher_acc" not in s["length"]
  assert "[encoder]" not in (tmp_path / "samples.txt").read_text()
