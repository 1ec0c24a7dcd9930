"""A workdir nothing can damage: fault injection through the launcher.

Each test runs `experiments/run.py` in-process (`experiments.run.main(argv)`, the same code as the
command line, returning its exit status) on a tiny config file, and checks the exit status, that
stderr holds no traceback, and that checkpoints, metrics.jsonl and config.json are byte-identical
to before (or, for fall-back, that the run resumed from the named earlier step). The signal tests
run the launcher as a real process.
"""

import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from experiments import run
from smt_jax.checkpointing import SUBDIR
from smt_jax.train.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]

TINY = """
from smt_jax.config import base_config

def get_config():
  c = base_config()
  c.data.vocab_size = 7
  c.data.T = 8
  c.model.d_model = 8
  c.model.num_heads = 2
  c.model.mlp_ratio = 2
  c.model.mem_tokens = 2
  c.model.teacher.encoder_depth = 1
  c.model.teacher.Tc = 4
  c.model.teacher.Tf = 3
  c.model.rnn.depth = 1
  c.dmt.Td = 5
  c.dmt.k = 2
  c.method = "bptt"
  c.optim.warmup_steps = 1
  c.train.num_steps = 4
  c.train.batch_size = 4
  c.train.eval_every = 2
  c.train.eval_batch_size = 4
  c.train.eval_batches = 1
  c.train.final_eval = False
  c.log.every = 2
  c.log.plot = False
  c.log.progress = False
  c.ckpt.every = 2
  return c
"""


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
  """The tiny config as a config file."""
  path = tmp_path_factory.mktemp("config") / "tiny.py"
  path.write_text(TINY)
  return path


def launch(capsys, config, workdir, *flags):
  """(exit status, stderr) of experiments/run.py in-process."""
  capsys.readouterr()
  code = run.main(["run.py", f"--config={config}", f"--workdir={workdir}", *flags])
  err = capsys.readouterr().err
  assert "Traceback" not in err, err
  return code, err


@pytest.fixture(scope="module")
def finished(tiny_file, tmp_path_factory):
  """A finished 4-step run: checkpoints 2 and 4, metrics rows at 2 and 4."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  assert run.main(["run.py", f"--config={tiny_file}", f"--workdir={workdir}"]) == 0
  assert sorted(os.listdir(workdir / SUBDIR)) == ["2", "4"]
  return workdir


def copy(finished, tmp_path) -> pathlib.Path:
  return pathlib.Path(shutil.copytree(finished, tmp_path / "run"))


def snapshot(workdir: pathlib.Path) -> dict:
  """{relative path: bytes} of the files that must survive a failed run untouched."""
  files = [workdir / "metrics.jsonl", workdir / "config.json"]
  files += [p for p in (workdir / SUBDIR).rglob("*") if p.is_file()]
  return {str(p.relative_to(workdir)): p.read_bytes() for p in files if p.exists()}


def steps(workdir):
  return [(r["step"], r["split"]) for r in read_metrics(workdir / "metrics.jsonl")]


FULL = [(2, "train"), (2, "eval"), (4, "train"), (4, "eval")]


@pytest.mark.integration
def test_fresh_run_and_rerun_say_what_they_do(finished, tiny_file, tmp_path, capsys):
  workdir = copy(finished, tmp_path)
  code, err = launch(capsys, tiny_file, tmp_path / "new")
  assert code == 0 and "starting from scratch (step 0 of 4)" in err
  before = snapshot(workdir)
  code, err = launch(capsys, tiny_file, workdir)
  assert code == 0 and "already at step 4: evaluating only" in err
  assert snapshot(workdir) == before
  code, err = launch(capsys, tiny_file, workdir, "--config.train.num_steps=6")
  assert code == 0 and "resuming from step 4 of 6" in err
  assert steps(workdir) == FULL + [(6, "train"), (6, "eval")]
  assert json.loads((workdir / "config.json").read_text())["train"]["num_steps"] == 6
  assert not (workdir / ".lock").exists()


def damage_truncate(checkpoint: pathlib.Path) -> None:
  """Truncates every array data file of the checkpoint's params to half its size."""
  data = [p for p in (checkpoint / "params").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert data
  for p in data:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@pytest.mark.integration
@pytest.mark.parametrize("damage", ["truncated_array", "deleted_item"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(
  damage, finished, tiny_file, tmp_path, capsys
):
  workdir = copy(finished, tmp_path)
  if damage == "truncated_array":  # As a process: orbax's failed reads must print nothing.
    damage_truncate(workdir / SUBDIR / "4")
    process = launch_process(RUN, f"--config={tiny_file}", f"--workdir={workdir}")
    _, err = process.communicate(timeout=300)
    code = process.returncode
    assert "Traceback" not in err and "Event loop is closed" not in err, err
  else:
    shutil.rmtree(workdir / SUBDIR / "4" / "params")
    code, err = launch(capsys, tiny_file, workdir)
  assert code == 0, err
  assert "checkpoint 4 skipped: it cannot be read" in err
  assert "using checkpoint 2, the newest readable one" in err
  assert "resuming from step 2 of 4" in err
  assert (workdir / "checkpoints.damaged" / "4").is_dir()  # Kept, out of the way.
  assert sorted(os.listdir(workdir / SUBDIR)) == ["2", "4"]  # 4 re-trained and saved.
  assert steps(workdir) == FULL


def test_no_readable_checkpoint_exits_1_and_changes_nothing(finished, tiny_file, tmp_path, capsys):
  workdir = copy(finished, tmp_path)
  for step in ("2", "4"):
    shutil.rmtree(workdir / SUBDIR / step / "params")
  before = snapshot(workdir)
  code, err = launch(capsys, tiny_file, workdir)
  assert code == 1
  assert "no checkpoint can be read (step 4:" in err and "step 2:" in err
  assert len(err.strip().splitlines()) == 1, err
  assert snapshot(workdir) == before


def test_changed_shape_on_resume_names_the_fields_and_changes_nothing(
  finished, tiny_file, tmp_path, capsys
):
  workdir = copy(finished, tmp_path)
  before = snapshot(workdir)
  code, err = launch(
    capsys, tiny_file, workdir, "--config.model.d_model=16", "--config.train.num_steps=6"
  )
  assert code == 1
  assert "model.d_model: checkpoint 8, config 16" in err
  assert "use a new --workdir" in err and "ckpt.init_from" in err
  assert snapshot(workdir) == before  # config.json too.
  assert not (workdir / ".lock").exists()


def test_torn_last_metrics_line_is_dropped_with_a_warning(finished, tiny_file, tmp_path, capsys):
  workdir = copy(finished, tmp_path)
  shutil.rmtree(workdir / SUBDIR / "4")
  with (workdir / "metrics.jsonl").open("a") as f:
    f.write('{"step": 6, "split": "tr')  # A write cut short.
  code, err = launch(capsys, tiny_file, workdir)
  assert code == 0, err
  assert "dropped a torn last line" in err and "resuming from step 2 of 4" in err
  assert steps(workdir) == FULL
  assert (workdir / "metrics.jsonl").read_text().endswith("}\n")


def test_metrics_without_checkpoints_are_refused(finished, tiny_file, tmp_path, capsys):
  workdir = copy(finished, tmp_path)
  shutil.rmtree(workdir / SUBDIR)
  before = snapshot(workdir)
  code, err = launch(capsys, tiny_file, workdir)
  assert code == 1
  assert "holds 4 rows (up to step 4)" in err and "holds no checkpoint" in err
  assert "To start over, delete or move" in err
  assert snapshot(workdir) == before
  assert not (workdir / SUBDIR).exists()


@pytest.mark.integration
def test_locked_workdir_exits_1_naming_the_holder(finished, tiny_file, tmp_path, capsys):
  workdir = copy(finished, tmp_path)
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    lock = {"pid": holder.pid, "host": socket.gethostname(), "started": time.time()}
    (workdir / ".lock").write_text(json.dumps(lock))
    before = snapshot(workdir)
    code, err = launch(capsys, tiny_file, workdir, "--config.train.num_steps=6")
    assert code == 1
    assert f"is in use by process {holder.pid} on {socket.gethostname()}" in err
    assert snapshot(workdir) == before
    assert json.loads((workdir / ".lock").read_text())["pid"] == holder.pid  # Not released.
  finally:
    holder.kill()
    holder.wait()
  # The holder is gone: its lock is stale and taken over.
  code, err = launch(capsys, tiny_file, workdir, "--config.train.num_steps=6")
  assert code == 0
  assert f"taking over a stale lock of process {holder.pid}" in err
  assert not (workdir / ".lock").exists()


@pytest.mark.integration
def test_nan_before_the_first_checkpoint_leaves_no_orphan_metrics(tiny_file, tmp_path, capsys):
  code, err = launch(capsys, tiny_file, tmp_path, "--config.optim.lr=1e30")
  assert code == 1 and "is NaN/Inf" in err
  assert "removed metrics.jsonl" in err or not (tmp_path / "metrics.jsonl").exists()
  assert not (tmp_path / "metrics.jsonl").exists()
  code, err = launch(capsys, tiny_file, tmp_path)  # Starts over without a refusal.
  assert code == 0 and "starting from scratch" in err


RUN = "import sys; from experiments import run; sys.exit(run.main(sys.argv))"
SLOW_SAVE = """
import sys, time
from smt_jax import checkpointing

save = checkpointing.Checkpointer.save
def slow_save(self, step, params, opt_state):
  if step == 2:
    print("SAVING", flush=True)
    time.sleep(3)  # The signal arrives here, inside the save of step 2.
  save(self, step, params, opt_state)
checkpointing.Checkpointer.save = slow_save

from experiments import run
sys.exit(run.main(sys.argv))
"""


def launch_process(script: str, *args):
  return subprocess.Popen(
    [sys.executable, "-c", script, *args],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env={
      **os.environ,
      "PYTHONPATH": str(ROOT),
      "JAX_PLATFORMS": "cpu",  # The suite's compilation cache comes with os.environ.
    },
  )


@pytest.mark.integration
@pytest.mark.parametrize(
  "signum, times",
  [
    # One handler serves both signals; SIGINT is also sent twice below (slow: CI time).
    pytest.param(signal.SIGINT, 1, marks=pytest.mark.slow),
    (signal.SIGTERM, 1),
    (signal.SIGINT, 2),
  ],
  ids=["SIGINT", "SIGTERM", "SIGINT_twice"],
)
def test_signal_during_a_save_stops_cleanly_and_the_next_run_resumes(
  signum, times, finished, tiny_file, tmp_path, capsys
):
  workdir = tmp_path / "run"
  process = launch_process(SLOW_SAVE, f"--config={tiny_file}", f"--workdir={workdir}")
  assert process.stdout.readline().strip() == "SAVING"
  start = time.time()
  for _ in range(times):
    process.send_signal(signum)
    time.sleep(0.5)
  _, err = process.communicate(timeout=30)
  assert time.time() - start < 15  # The 3 s of the save, then a prompt exit.
  assert process.returncode == 128 + signum, err
  assert "Traceback" not in err and "RuntimeError" not in err, err
  name = signal.Signals(signum).name
  if times == 1:  # The save of step 2 completes; the run stops before step 3.
    assert f"{name}: stopped at step 2 of 4" in err
    assert "the last complete checkpoint is step 2" in err
    assert sorted(os.listdir(workdir / SUBDIR)) == ["2"]
  else:  # Exits at once, inside the save: nothing saved, so no rows left behind.
    assert f"{name} again: exiting now" in err
    assert not (workdir / SUBDIR).exists() or not os.listdir(workdir / SUBDIR)
    assert not (workdir / "metrics.jsonl").exists()
  assert not (workdir / ".lock").exists()
  code, err = launch(capsys, tiny_file, workdir)
  assert code == 0
  assert ("resuming from step 2 of 4" if times == 1 else "starting from scratch") in err
  assert steps(workdir) == FULL
  drop = lambda rows: [
    {k: v for k, v in r.items() if k not in ("steps_per_sec", "elapsed_s")} for r in rows
  ]
  assert drop(read_metrics(workdir / "metrics.jsonl")) == drop(
    read_metrics(finished / "metrics.jsonl")
  )


@pytest.mark.integration
def test_load_params_for_evaluation_falls_back_too(finished, tmp_path):
  from smt_jax.errors import ConfigError
  from smt_jax.train import load_params

  workdir = copy(finished, tmp_path)
  damage_truncate(workdir / SUBDIR / "4")
  skipped = []
  _, step = load_params(workdir, on_skip=lambda s, reason: skipped.append(s))
  assert step == 2 and skipped == [4]
  shutil.rmtree(workdir / SUBDIR / "2" / "params")
  with pytest.raises(ConfigError, match="no checkpoint can be read"):
    load_params(workdir)


def test_restore_drops_only_asyncio_unretrieved_task_records(caplog):
  """While a checkpoint is read, asyncio's "Task exception was never retrieved" (the damaged
  file's other concurrent reads) is dropped; other asyncio records and later ones still pass."""
  from smt_jax import checkpointing

  log = logging.getLogger("asyncio")
  with caplog.at_level(logging.ERROR, logger="asyncio"):
    with checkpointing._quiet_unretrieved_reads():
      log.error("Task exception was never retrieved")
      log.error("something else")
    log.error("Task exception was never retrieved")
  assert [r.getMessage() for r in caplog.records] == [
    "something else",
    "Task exception was never retrieved",
  ]
