"""Every bad input to experiments/run.py and evaluate.py gives one line on stderr, no traceback,
exit status 1, and leaves the workdir as it was.

The table runs each command in-process (`experiments.run.main` / `experiments.evaluate.main`, the
command lines' own code, which return the exit status); nothing in it trains or compiles. A few
rows also run as real processes (`test_as_a_process`).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import evaluate, run

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = "from smt_jax.config import base_config\n\n\ndef get_config():\n  return base_config()\n"
FILES = {  # Config files: name -> source.
  "base.py": TINY,
  "syntax.py": "def get_config(:\n  pass\n",
  "noget.py": "X = 1\n",
  "raises.py": "def get_config():\n  return 1 / 0\n",
  "imports.py": "import no_such_module_xyz\n",
  "none.py": "def get_config():\n  return None\n",
}

# (id, tool, argv after the program, fragment of the one-line message). In argv: {cfg} is the
# base config file, {dir} the folder of config files, {wd} a workdir (prepared by `setup`),
# {file} a plain file, {tokens} a folder of uint16 token ids (max id 999).
RUN, EVAL = "run", "evaluate"
CASES = [
  ("no_flags", RUN, [], "--config is required"),
  ("no_workdir", RUN, ["--config={cfg}"], "--workdir is required"),
  ("empty_workdir", RUN, ["--config={cfg}", "--workdir="], "--workdir is empty"),
  ("workdir_is_a_file", RUN, ["--config={cfg}", "--workdir={file}"], "is a file, not a folder"),
  ("workdir_under_a_file", RUN, ["--config={cfg}", "--workdir={file}/sub"], "cannot be created"),
  ("config_missing", RUN, ["--config={dir}/nope.py", "--workdir={wd}"], "no such file"),
  ("config_empty", RUN, ["--config=", "--workdir={wd}"], "--config is empty"),
  (
    "config_syntax_error",
    RUN,
    ["--config={dir}/syntax.py", "--workdir={wd}"],
    "syntax error at line 1",
  ),
  (
    "config_without_get_config",
    RUN,
    ["--config={dir}/noget.py", "--workdir={wd}"],
    "defines no get_config()",
  ),
  (
    "config_get_config_raises",
    RUN,
    ["--config={dir}/raises.py", "--workdir={wd}"],
    "get_config() fails (ZeroDivisionError",
  ),
  (
    "config_import_error",
    RUN,
    ["--config={dir}/imports.py", "--workdir={wd}"],
    "fails to load (ModuleNotFoundError",
  ),
  (
    "config_returns_none",
    RUN,
    ["--config={dir}/none.py", "--workdir={wd}"],
    "returned NoneType, not a ConfigDict",
  ),
  (
    "config_bad_argument",
    RUN,
    ["--config=experiments/configs/repro_retrieval.py:L=3", "--workdir={wd}"],
    "config argument 'L' is unknown",
  ),
  (
    "unknown_field",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.train.nonexistent=1"],
    "has no field train.nonexistent; did you mean train.",
  ),
  (
    "misspelled_group",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.trian.num_steps=1"],
    "did you mean train.num_steps?",
  ),
  (
    "misspelled_field",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.model.d_modle=8"],
    "did you mean model.d_model?",
  ),
  (
    "unknown_task_knob",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.data.kwargs.bogus=1"],
    "The knobs of 'retrieval'",
  ),
  (
    "int_field_not_a_number",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.train.batch_size=abc"],
    "invalid literal for int()",
  ),
  (
    "float_field_not_a_number",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.optim.lr=fast"],
    "could not convert string to float",
  ),
  (
    "unknown_flag",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--bogus=1"],
    "Unknown command line flag 'bogus'",
  ),
  (
    "positional_argument",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "extra"],
    "unexpected argument 'extra'",
  ),
  (
    "batch_size_zero",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.train.batch_size=0"],
    "train.batch_size=0 must be >= 1",
  ),
  (
    "batch_size_negative",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.train.batch_size=-4"],
    "train.batch_size=-4 must be >= 1",
  ),
  (
    "num_steps_zero",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.train.num_steps=0"],
    "train.num_steps=0 must be >= 1",
  ),
  (
    "heads_do_not_divide",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.model.num_heads=3"],
    "must be divisible by model.num_heads=3",
  ),
  (
    "odd_head_width",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.model.d_model=24", "--config.model.num_heads=8"],
    "must be even",
  ),
  (
    "unknown_task",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.data.name=sudoku"],
    "data.name='sudoku' is unknown",
  ),
  (
    "unknown_method",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.method=sgd"],
    "method='sgd' is unknown",
  ),
  (
    "unknown_updater",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.model.rnn.updater=rwkv"],
    "model.rnn.updater='rwkv' is unknown",
  ),
  (
    "unknown_dtype",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.model.dtype=float16"],
    "model.dtype='float16' is unknown",
  ),
  (
    "unknown_schedule",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.optim.schedule=linear"],
    "optim.schedule='linear' is unknown",
  ),
  ("lr_zero", RUN, ["--config={cfg}", "--workdir={wd}", "--config.optim.lr=0"], "must be > 0"),
  ("lr_negative", RUN, ["--config={cfg}", "--workdir={wd}", "--config.optim.lr=-1"], "must be > 0"),
  (
    "final_lr_frac_above_1",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.optim.final_lr_frac=2"],
    "must be in [0, 1]",
  ),
  (
    "warmup_negative",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.optim.warmup_steps=-1"],
    "optim.warmup_steps=-1 must be >= 0",
  ),
  (
    "clip_negative",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.optim.clip_norm=-1"],
    "must be >= 0 (0 = no clipping)",
  ),
  (
    "unknown_trainable_group",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.train.trainable=('encoder','memory')"],
    "names unknown groups",
  ),
  (
    "grad_accum_does_not_divide",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.train.grad_accum=3"],
    "must be divisible by train.grad_accum=3",
  ),
  (
    "eval_batch_size_zero",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.train.eval_batch_size=0"],
    "train.eval_batch_size must be >= 1",
  ),
  (
    "window_longer_than_T",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.model.teacher.Tc=65"],
    "model.teacher.Tc=65 must be in [1, data.T = 64]",
  ),
  (
    "vocab_below_2",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.data.vocab_size=1"],
    "data.vocab_size=1 must be >= 2",
  ),
  (
    "rollout_too_long",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.dmt.Td=99"],
    "dmt.Td=99 must be",
  ),
  (
    "bptt_start_unknown",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.bptt.start=zeros"],
    "bptt.start='zeros' is unknown",
  ),
  (
    "bptt_from_empty_without_encoder",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.method=bptt", "--config.bptt.start=empty"],
    "set ckpt.init_from to an SMT or DMT run",
  ),
  (
    "stride_zero",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.dmt.k=0"],
    "dmt.k=0 must be in",
  ),
  (
    "n_t_too_large",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.smt.n_t=99"],
    "smt.n_t=99 must be in",
  ),
  (
    "prefix_too_large",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.eval.prefix=99"],
    "eval.prefix=99 must be",
  ),
  (
    "unknown_eval_section",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.eval.sections=('read','bogus')"],
    "must name some of",
  ),
  (
    "carry_without_teacher",
    RUN,
    [
      "--config={cfg}",
      "--workdir={wd}",
      "--config.method=bptt",
      "--config.eval.sections=('read','carry')",
    ],
    "has no encoder to start the updater from",
  ),
  (
    "state_without_a_stack",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.eval.sections=('read','state')"],
    "has no stack to probe: it needs an RNN on data.name='stack'",
  ),
  (
    "init_groups_unknown",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.ckpt.init_groups=('updater','memory')"],
    "unknown: ['memory']",
  ),
  (
    "ckpt_every_not_multiple",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.ckpt.every=75"],
    "must be a positive multiple of log.every=50",
  ),
  (
    "keep_zero",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.ckpt.keep=0"],
    "ckpt.keep=0 must be >= 1",
  ),
  (
    "log_every_zero",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.log.every=0"],
    "log.every=0 must be >= 1",
  ),
  (
    "init_from_missing",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.ckpt.init_from=/nowhere/smt"],
    "holds no checkpoint",
  ),
  (
    "fsdp_does_not_divide",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.mesh.fsdp=3"],
    "mesh.fsdp dividing",
  ),
  (
    "pipeline_stage_undefined",
    RUN,
    ["--config={cfg}", "--workdir={wd}", "--config.pipeline.order=('smt','dmt')"],
    "pipeline.stages.smt is not defined",
  ),
  (
    "stream_not_prepared",
    RUN,
    [
      "--config={cfg}",
      "--workdir={wd}",
      "--config.data.name=kjv",
      "--config.data.vocab_size=256",
      "--config.data.path=/nowhere/kjv",
    ],
    "no prepared 'kjv' data",
  ),
  (
    "tokens_folder_missing",
    RUN,
    [
      "--config={cfg}",
      "--workdir={wd}",
      "--config.data.name=tokens",
      "--config.data.path=/nowhere/tokens",
    ],
    "no folder /nowhere/tokens",
  ),
  (
    "tokens_vocab_too_small",
    RUN,
    [
      "--config={cfg}",
      "--workdir={wd}",
      "--config.data.name=tokens",
      "--config.data.path={tokens}",
      "--config.data.vocab_size=500",
    ],
    "set data.vocab_size to at least 1000",
  ),
  ("workdir_locked", RUN, ["--config={cfg}", "--workdir={wd}"], "is in use by process"),
  (
    "metrics_without_checkpoints",
    RUN,
    ["--config={cfg}", "--workdir={wd}"],
    "holds no checkpoint, so there is nothing to resume",
  ),
  ("metrics_corrupt_line", RUN, ["--config={cfg}", "--workdir={wd}"], "line 1: not a metrics row"),
  ("eval_no_workdir", EVAL, [], "--workdir is required"),
  ("eval_empty_workdir", EVAL, ["--workdir="], "--workdir is empty"),
  ("eval_missing_workdir", EVAL, ["--workdir={wd}/nowhere"], "is not a folder"),
  ("eval_workdir_is_a_file", EVAL, ["--workdir={file}"], "is not a folder"),
  ("eval_no_config_json", EVAL, ["--workdir={wd}"], "config.json not found"),
  ("eval_corrupt_config_json", EVAL, ["--workdir={wd}"], "is not valid JSON"),
  ("eval_config_json_not_a_dict", EVAL, ["--workdir={wd}"], "does not hold a config"),
  ("eval_config_json_unknown_field", EVAL, ["--workdir={wd}"], "has a field train.epochs"),
  ("eval_no_checkpoint", EVAL, ["--workdir={wd}"], "no checkpoint found"),
  (
    "eval_unknown_override",
    EVAL,
    ["--workdir={wd}", "--config.eval.bogus=1"],
    "has no field eval.bogus; did you mean eval.",
  ),
  (
    "eval_bad_override_value",
    EVAL,
    ["--workdir={wd}", "--config.eval.temperature=abc"],
    "could not convert string to float",
  ),
  ("eval_unknown_flag", EVAL, ["--workdir={wd}", "--steps=3"], "Unknown command line flag 'steps'"),
]


def setup(case: str, wd: pathlib.Path) -> None:
  """Prepares the workdir a case needs (most need none: nothing may create it)."""
  config = json.dumps({"method": "smt", "data": {"name": "retrieval"}})
  prepared = {
    "workdir_locked": {".lock": json.dumps({"pid": os.getpid(), "host": socket.gethostname()})},
    "metrics_without_checkpoints": {"metrics.jsonl": '{"step": 50, "split": "train"}\n'},
    "metrics_corrupt_line": {
      "metrics.jsonl": 'garbage\n{"step": 50, "split": "train"}\n',
      "checkpoints/50/x": "",
    },
    "eval_corrupt_config_json": {"config.json": '{"method": "smt", "data": {'},
    "eval_config_json_not_a_dict": {"config.json": "[1, 2]"},
    "eval_config_json_unknown_field": {"config.json": json.dumps({"train": {"epochs": 3}})},
    "eval_no_checkpoint": {"config.json": config},
    "eval_no_config_json": {"metrics.jsonl": ""},
  }.get(case, {})
  for name, text in prepared.items():
    (wd / name).parent.mkdir(parents=True, exist_ok=True)
    (wd / name).write_text(text)


def snapshot(folder: pathlib.Path) -> dict | None:
  if not folder.exists():
    return None
  return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  folder = tmp_path_factory.mktemp("inputs")
  for name, text in FILES.items():
    (folder / name).write_text(text)
  (folder / "plain.txt").write_text("not a folder\n")
  tokens = folder / "tokens"
  tokens.mkdir()
  for split in ("train", "test"):
    np.save(tokens / f"{split}.npy", np.arange(2000, dtype=np.uint16) % 1000)
  return folder


def command(files: pathlib.Path, wd: pathlib.Path, argv: list[str]) -> list[str]:
  fill = dict(cfg=files / "base.py", dir=files, wd=wd, file=files / "plain.txt")
  return [a.format(**fill, tokens=files / "tokens") for a in argv]


@pytest.mark.parametrize("case, tool, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, tool, argv, fragment, files, tmp_path, capsys, monkeypatch):
  from smt_jax.train import loop

  def no_training(*args):  # An input that passes validation by mistake fails fast.
    raise AssertionError(f"{case}: the command started training")

  monkeypatch.setattr(loop._Run, "train", no_training)
  wd = tmp_path / "wd"
  if case.startswith(("workdir_locked", "metrics_", "eval_")) and "{wd}" in " ".join(argv):
    wd.mkdir()
    setup(case, wd)
  before, plain = snapshot(wd), (files / "plain.txt").read_bytes()
  main = run.main if tool == RUN else evaluate.main
  capsys.readouterr()
  code = main([f"{tool}.py", *command(files, wd, argv)])
  out = capsys.readouterr()
  assert code == 1, out
  assert "Traceback" not in out.err
  lines = out.err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), out.err
  assert fragment in lines[0]
  assert snapshot(wd) == before  # Nothing created, nothing changed.
  assert (files / "plain.txt").read_bytes() == plain


def test_table_has_at_least_40_cases():
  assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


PROCESS_CASES = [
  "unknown_field",
  "config_syntax_error",
  "batch_size_zero",
  "eval_corrupt_config_json",
]


@pytest.mark.integration
@pytest.mark.parametrize("case", PROCESS_CASES)
def test_as_a_process(case, files, tmp_path):
  """The same rows through `python experiments/{run,evaluate}.py`: exit 1, one line."""
  _, tool, argv, fragment = next(c for c in CASES if c[0] == case)
  wd = tmp_path / "wd"
  if case.startswith("eval_"):
    wd.mkdir()
    setup(case, wd)
  start = time.time()
  result = subprocess.run(
    [sys.executable, f"experiments/{tool}.py", *command(files, wd, argv)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 1, result.stderr
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]
  assert fragment in result.stderr
  assert time.time() - start < 60  # Before anything compiles.
