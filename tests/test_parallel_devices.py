"""Sharded training on several devices and processes, each run in a child process.

JAX fixes its device count when it starts, so every test here starts `python THIS_FILE MODE ...`
with XLA_FLAGS=--xla_force_host_platform_device_count=N (fake CPU devices) and checks what the
child prints (one JSON line), or runs experiments/run.py as two processes of one
jax.distributed job on 127.0.0.1. The pytest process itself keeps its single CPU device.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from conftest import make_tiny_config

pytestmark = pytest.mark.integration  # Child processes: second tier.
ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 240  # Per child process; a hung collective fails the test instead of the suite.


def child_env(devices: int) -> dict:
  """The environment of a child on `devices` fake CPU devices (with the suite's compilation
  cache, which tests/conftest.py puts in os.environ)."""
  return {
    **os.environ,
    "PYTHONPATH": str(ROOT),
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
  }


def run_child(devices: int, *args) -> dict:
  """Runs this file's `main(*args)` on `devices` fake CPU devices; its JSON result."""
  result = subprocess.run(
    [sys.executable, __file__, *map(str, args)],
    cwd=ROOT,
    env=child_env(devices),
    capture_output=True,
    text=True,
    timeout=TIMEOUT_S,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def tiny_run_config(method: str, **overrides):
  """The tests' tiny model (tests/conftest.py) on retrieval data, 4 updates, no final eval."""
  fields = {
    "method": method,
    "data.name": "retrieval",
    "train.num_steps": 4,
    "train.batch_size": 8,
    "train.eval_every": 2,
    "train.eval_batch_size": 8,
    "train.eval_batches": 1,
    "train.final_eval": False,
    "log.every": 2,
    "ckpt.every": 2,
    "log.plot": False,
    "log.progress": False,
    "optim.warmup_steps": 1,
  }
  return make_tiny_config(**{**fields, **overrides})


# ---------------------------------------------------------------------------------------------
# Child side: runs with fake devices, prints one JSON line.


def one_step_on(cfg, mesh) -> tuple:
  """(initial params on the host, state, metrics) of update 0 of cfg on `mesh`."""
  from smt_jax.train.loop import fresh_start

  state, step_fn = fresh_start(cfg, mesh)
  initial = jax.device_get(state.params)
  return (initial, *step_fn(state, 0))


def sharded_step(method: str, data: str, fsdp: str, grad_accum: str) -> dict:
  """Compares one update on every device (mesh data x fsdp) with one on a single device: the
  same batch and rng, so states and metrics agree up to the order of sums.

  The first update uses the full learning rate with Adam's eps = 1e-3: AdamW's first step is
  ~lr * sign(g), which float noise would flip where g is ~0; eps keeps it well conditioned.
  """
  cfg = tiny_run_config(
    method,
    **{
      "mesh.data": int(data),
      "mesh.fsdp": int(fsdp),
      "train.grad_accum": int(grad_accum),
      "optim.schedule": "warmup_constant",
      "optim.warmup_steps": 0,
      "optim.eps": 1e-3,
    },
  )
  from smt_jax import parallel

  initial, sharded_state, sharded_metrics = one_step_on(cfg, parallel.make_mesh(cfg.mesh))
  single = parallel.make_mesh(ml_collections.ConfigDict({"data": 1, "fsdp": 1}))
  _, single_state, single_metrics = one_step_on(cfg, single)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    (sharded_state, sharded_metrics),
    (single_state, single_metrics),
  )
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), initial, single_state.params)
  split = [not a.sharding.is_fully_replicated for a in jax.tree.leaves(sharded_state.params)]
  return {
    "devices": len(jax.tree.leaves(sharded_state.params)[0].sharding.device_set),
    "split_leaves": sum(split),
    "moved_leaves": sum(jax.tree.leaves(moved)),
    "loss": float(single_metrics["loss"]),
  }


def train(data: str, fsdp: str, *workdirs: str) -> list[dict]:
  """train_and_evaluate of the tiny SMT run into each workdir (resuming it) on a (data, fsdp)
  mesh; with the sum of the parameters of each workdir's step-2 checkpoint (load_params)."""
  from smt_jax.train import train_and_evaluate

  cfg = tiny_run_config("smt", **{"mesh.data": int(data), "mesh.fsdp": int(fsdp)})
  return [
    {"final": train_and_evaluate(cfg, w), "step2_param_sum": param_sum(w, 2)} for w in workdirs
  ]


def param_sum(workdir, step=None) -> float:
  """The sum of all parameters of a workdir's latest (or given) checkpoint, via load_params."""
  from smt_jax.train import load_params

  params, _ = load_params(workdir, step)
  return float(sum(np.sum(np.asarray(a, np.float64)) for a in jax.tree.leaves(params)))


def two_checkpointers(address: str, process_id: str, workdir: str) -> dict:
  """One process of a 2-process job that saves steps 1-3 into workdir/best and
  workdir/checkpoints back to back, as a run with ckpt.keep_best does; process 1 finishes its
  best/ writes 3 s late (a loaded machine), so each step's two saves overlap across processes."""
  jax.distributed.initialize(address, num_processes=2, process_id=int(process_id))
  import time

  from orbax.checkpoint._src.checkpointers import async_checkpointer

  from smt_jax import checkpointing

  finish_writes = async_checkpointer._background_wait_for_commit_futures

  def late_on_process_1(directory, *args, **kwargs):
    if jax.process_index() == 1 and pathlib.Path(str(directory)).parent.name == "best":
      time.sleep(3)
    return finish_writes(directory, *args, **kwargs)

  async_checkpointer._background_wait_for_commit_futures = late_on_process_1
  root = pathlib.Path(workdir)
  best = checkpointing.Checkpointer(root / "best", keep=1)
  regular = checkpointing.Checkpointer(root / checkpointing.SUBDIR)
  params, opt_state = {"w": np.arange(4.0)}, {"count": np.zeros(())}
  for step in (1, 2, 3):
    best.save(step, params, opt_state)
    regular.save(step, params, opt_state)
  best.close()
  regular.close()
  return {"best": sorted(p.name for p in (root / "best").iterdir() if p.name.isdigit())}


def main(mode: str, *args: str) -> None:
  modes = {"sharded_step": sharded_step, "train": train, "two_checkpointers": two_checkpointers}
  print(json.dumps(modes[mode](*args)))


# ---------------------------------------------------------------------------------------------
# Tests.


@pytest.mark.parametrize(
  "method,data,fsdp,grad_accum",
  [
    # Batch over 8 devices, matrices split in two, gradient accumulation over sharded rows.
    ("smt", 4, 2, 2),
    pytest.param("dmt", 8, 1, 1, marks=pytest.mark.slow),  # Plain data parallelism.
    pytest.param("bptt", 2, 4, 1, marks=pytest.mark.slow),  # Matrices split in four.
  ],
)
def test_sharded_step_equals_single_device_step(method, data, fsdp, grad_accum):
  out = run_child(8, "sharded_step", method, data, fsdp, grad_accum)  # Asserts allclose.
  assert out["devices"] == 8
  assert (out["split_leaves"] > 0) == (fsdp > 1)
  assert out["moved_leaves"] > 0 and np.isfinite(out["loss"])


def test_checkpoints_move_between_device_counts(tmp_path):
  """Saved on 2 devices (FSDP: matrices split) -> resumed on 1, and saved on 1 -> resumed on 2;
  both end where a run on 1 device does."""
  from smt_jax import checkpointing
  from smt_jax.train import train_and_evaluate

  reference = train_and_evaluate(tiny_run_config("smt"), tmp_path / "reference")
  one_then_two = tmp_path / "one_then_two" / checkpointing.SUBDIR
  shutil.copytree(tmp_path / "reference" / checkpointing.SUBDIR / "2", one_then_two / "2")

  resumed_on_two, started_on_two = run_child(
    2, "train", 1, 2, one_then_two.parent, tmp_path / "two_then_one"
  )
  # Drop the last checkpoint of the 2-device run: resume from its step 2 on 1 device.
  shutil.rmtree(tmp_path / "two_then_one" / checkpointing.SUBDIR / "4")
  resumed_on_one = train_and_evaluate(tiny_run_config("smt"), tmp_path / "two_then_one")

  assert resumed_on_two["step2_param_sum"] == pytest.approx(param_sum(tmp_path / "reference", 2))
  assert param_sum(tmp_path / "two_then_one", 2) == pytest.approx(started_on_two["step2_param_sum"])
  for final in (resumed_on_two["final"], started_on_two["final"], resumed_on_one):
    for name in ("loss", "rnn_loss", "teacher_loss"):
      assert final[name] == pytest.approx(reference[name], rel=1e-4), name
  np.testing.assert_allclose(
    param_sum(tmp_path / "two_then_one"), param_sum(tmp_path / "reference"), rtol=1e-5
  )


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_processes(commands: list[list[str]]) -> list[str]:
  """Runs `commands` as concurrent children (one jax.distributed job); their stdouts."""
  children = [
    subprocess.Popen(
      command,
      cwd=ROOT,
      env=child_env(1),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for command in commands
  ]
  try:
    outputs = [child.communicate(timeout=TIMEOUT_S) for child in children]
  finally:
    for child in children:
      if child.poll() is None:
        child.kill()
        child.communicate()
  for child, (_, stderr) in zip(children, outputs):
    assert child.returncode == 0, stderr[-4000:]
  return [out for out, _ in outputs]


def run_two_processes(workdir: pathlib.Path, *flags: str) -> list[dict]:
  """experiments/run.py as two processes of one jax.distributed job on the smoke config, with
  `flags`; each process's last stdout line as {field: value}."""
  address = f"127.0.0.1:{free_port()}"
  command = [
    sys.executable,
    "experiments/run.py",
    "--config=experiments/configs/smoke.py",
    f"--workdir={workdir}",
    "--config.train.final_eval=False",
    f"--coordinator_address={address}",
    "--num_processes=2",
    *flags,
  ]
  outputs = run_processes([[*command, f"--process_id={i}"] for i in range(2)])
  return [dict(kv.split("=") for kv in out.strip().splitlines()[-1].split()) for out in outputs]


def test_two_processes_train_together_and_report_the_same_loss(tmp_path):
  steps = lambda n: [f"--config.train.num_steps={n}", "--config.train.eval_every=2"]
  finals = run_two_processes(tmp_path, *steps(2), "--config.ckpt.keep_best=rnn_loss")
  assert finals[0]["step"] == finals[1]["step"] == "2"
  assert finals[0]["loss"] == finals[1]["loss"] and finals[0]["rnn_acc"] == finals[1]["rnn_acc"]
  from smt_jax.train.metrics import read_metrics

  rows = read_metrics(tmp_path / "metrics.jsonl")  # Written by process 0 only.
  assert [(r["step"], r["split"]) for r in rows] == [(2, "train"), (2, "eval")]
  assert (tmp_path / "checkpoints" / "2").is_dir()
  assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["2"]

  # A best/ checkpoint newer than the one the resume restores (as a run killed between its best
  # and its regular save leaves): process 0 removes it before either process opens best/.
  shutil.copytree(tmp_path / "best" / "2", tmp_path / "best" / "3")
  finals = run_two_processes(tmp_path, *steps(4), "--config.ckpt.keep_best=rnn_loss")
  assert finals[0]["step"] == finals[1]["step"] == "4"
  assert finals[0]["loss"] == finals[1]["loss"]
  best = sorted(int(p.name) for p in (tmp_path / "best").iterdir() if p.name.isdigit())
  assert 3 not in best and len(best) == 1 and best[0] in (2, 4)


def test_checkpointers_saving_the_same_step_at_once_do_not_share_a_barrier(tmp_path):
  """A run's best/ and checkpoints/ save each evaluated step back to back; with one process's
  writes late, shared barrier names deadlocked the job (the old failure of the test above)."""
  address = f"127.0.0.1:{free_port()}"
  command = [sys.executable, __file__, "two_checkpointers", address]
  outputs = run_processes([[*command, str(i), str(tmp_path)] for i in range(2)])
  for out in outputs:
    assert json.loads(out.strip().splitlines()[-1]) == {"best": ["3"]}
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2", "3"]


if __name__ == "__main__":
  main(*sys.argv[1:])
