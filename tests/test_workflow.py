"""A researcher's workflow around a trained run: command-line overrides of pipeline configs,
merged evaluations, dry runs, progress lines without a terminal, generation,
export, GPU-sized configs."""

import functools
import io
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import CompiledModels, make_tiny_config

from experiments import evaluate as evaluate_cli
from experiments import generate, run
from experiments.cli import load_config_file
from smt_jax import checkpointing, export
from smt_jax.config import strict
from smt_jax.errors import ConfigError
from smt_jax.eval import evaluate
from smt_jax.models import build_models, init_params
from smt_jax.objectives import method_of
from smt_jax.train import train_and_evaluate
from smt_jax.train.metrics import ProgressLog, format_duration, read_metrics
from smt_jax.train.pipeline import check_overrides, stage_config
from smt_jax.train.validate import validate, validate_model

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


@pytest.mark.integration
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


@pytest.mark.integration
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
    assert (path.name in out) == (not path.name.startswith("_")), path.name


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


@pytest.mark.integration
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


def reference_sample(key, logits, temperature, top_k):
  """A token per row of logits (B, V): argmax at temperature 0, else softmax(logits / T) over
  the top_k largest (all if 0), drawn with jax.random.categorical."""
  logits = np.asarray(logits, np.float32)
  if temperature == 0:
    return np.argmax(logits, -1)
  if top_k:
    kth = np.sort(logits, -1)[:, -top_k][:, None]
    logits = np.where(logits >= kth, logits, -np.inf)
  return np.asarray(jax.random.categorical(key, jnp.asarray(logits) / temperature, axis=-1))


@pytest.mark.parametrize(
  "method,temperature,top_k",
  [
    pytest.param("smt", 1.0, 3, marks=pytest.mark.integration),
    pytest.param("dmt", 0.0, 0, marks=pytest.mark.integration),
    ("bptt", 0.7, 0),
  ],
)
def test_rnn_generation_equals_a_python_loop_over_step_and_read(method, temperature, top_k):
  cfg = make_tiny_config(method=method)
  models, cmodels = build_models(cfg), CompiledModels(cfg)
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(1))
  prompt = jnp.array([[1, 4, 2], [3, 0, 6]], jnp.int32)
  key, length = jax.random.key(5), 6
  out = jax.jit(
    lambda p, x, k: generate.generate_rnn(cfg, models, p, x, k, length, temperature, top_k)
  )(params, prompt, key)
  # SMT's RNN reads through a copy of the decoder; SMT and DMT start at m_empty, BPTT at init.
  rnn = {**params, "readout": {"decoder": params["decoder"]}} if method == "smt" else params
  start = cmodels.initial_memory if method == "bptt" else cmodels.empty_memory
  m = start(rnn, 2)
  for t in range(prompt.shape[1]):
    m = cmodels.step(rnn, m, prompt[:, t])
  expected = []
  for step_key in jax.random.split(key, length):
    token = reference_sample(step_key, cmodels.read(rnn, m), temperature, top_k)
    expected.append(token)
    m = cmodels.step(rnn, m, jnp.asarray(token, jnp.int32))
  np.testing.assert_array_equal(out, np.stack(expected, 1))


def test_teacher_generation_equals_a_python_loop_over_encode_and_decode():
  cfg = make_tiny_config()  # Window encoder, Tc = 4.
  models, cmodels = build_models(cfg), CompiledModels(cfg)
  params = jax.jit(lambda key: init_params(cfg, key))(jax.random.key(1))
  prompt = jnp.array([[1, 4], [3, 0]], jnp.int32)
  key, length, tc = jax.random.key(2), 5, cfg.model.teacher.Tc
  out = jax.jit(lambda p, x, k: generate.generate_teacher(models, p, x, k, length, 1.0, 0))(
    params, prompt, key
  )
  seq = np.asarray(prompt)
  for step_key in jax.random.split(key, length):
    window = np.full((2, tc), -1, np.int32)  # The last Tc tokens, left-padded.
    tail = seq[:, -tc:]
    window[:, tc - tail.shape[1] :] = tail
    m = cmodels.encode(params, jnp.asarray(window))
    logits = cmodels.decode(params, m, jnp.zeros((2, 0), jnp.int32))[:, 0]
    seq = np.concatenate([seq, reference_sample(step_key, logits, 1.0, 0)[:, None]], 1)
  np.testing.assert_array_equal(out, seq[:, prompt.shape[1] :])


@pytest.mark.integration
def test_generate_cli_text_from_a_pipeline_stage_is_deterministic(tmp_path, capsys):
  data = tmp_path / "bytes"
  data.mkdir()
  text = np.frombuffer(b"in the beginning god created the heaven and the earth. " * 4, np.uint8)
  for split in ("train", "test"):
    np.save(data / f"{split}.npy", text)
  (data / "meta.json").write_text(json.dumps({"tokenizer": "byte"}))
  cfg = make_tiny_config(**{"data.name": "tokens", "data.path": str(data), "data.vocab_size": 256})
  pipeline = strict(cfg)
  pipeline.pipeline.order = ("smt", "dmt")
  pipeline.pipeline.stages = ml_collections.ConfigDict({"smt": {}, "dmt": {"method": "dmt"}})
  folder = tmp_path / "run"
  save_run(folder / "dmt", make_dmt(cfg))
  (folder / "config.json").write_text(pipeline.to_json_best_effort(indent=2))
  argv = ["generate.py", f"--workdir={folder}", "--prompt=in the ", "--length=12"]
  argv += ["--num_samples=2", "--top_k=5"]
  assert generate.main(argv) == 1  # A pipeline folder needs --stage.
  assert "its stages are smt, dmt: pass --stage=STAGE" in capsys.readouterr().err
  outputs = []
  for seed in (7, 7):
    assert generate.main(argv + ["--stage=dmt", f"--seed={seed}"]) == 0
    outputs.append(capsys.readouterr().out)
  assert outputs[0] == outputs[1]
  lines = outputs[0].splitlines()
  assert len(lines) == 2 and all(line.startswith("in the  || ") for line in lines)
  assert generate.main(argv + ["--stage=dmt", "--prompt_ids=1,2"]) == 1  # Two prompts.
  assert "exactly one of --prompt" in capsys.readouterr().err


def make_dmt(cfg):
  dmt = strict(cfg)
  dmt.method = "dmt"
  return dmt


@pytest.mark.integration
def test_generate_cli_completes_an_image_from_its_top_rows(tmp_path, capsys):
  digits = tmp_path / "digits"
  digits.mkdir()
  (digits / "meta.json").write_text(
    json.dumps({"name": "digits", "kind": "pixels", "image_shape": [2, 3]})
  )
  pixels = np.random.default_rng(0).integers(0, 256, 20 * 6).astype(np.uint8)
  for split in ("train", "test"):
    np.save(digits / f"{split}.npy", pixels)
  cfg = make_tiny_config(
    **{"data.name": "digits", "data.vocab_size": 256, "data.path": str(digits), "method": "bptt"}
  )
  save_run(tmp_path / "run", cfg)
  np.save(tmp_path / "prompt.npy", np.arange(6).reshape(2, 3) * 40)
  argv = ["generate.py", f"--workdir={tmp_path / 'run'}", f"--prompt_image={tmp_path}/prompt.npy"]
  assert generate.main(argv + ["--prompt_rows=1", f"--out={tmp_path / 'g.png'}"]) == 0
  assert (tmp_path / "g.png").stat().st_size > 0
  assert "3 prompt tokens, 3 written" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["smt", pytest.param("bptt", marks=pytest.mark.integration)])
def test_exported_rnn_round_trips_and_equals_step_and_read(method, tmp_path):
  cfg = make_tiny_config(method=method)
  params = save_run(tmp_path / "run", cfg, step=4)
  out = tmp_path / "rnn.npz"
  assert export.main([str(tmp_path / "run"), "--out", str(out)]) == 0
  rnn = export.load(out)
  assert rnn.config["step"] == 4 and rnn.config["method"] == method
  # SMT's RNN reads through a copy of the decoder from m_empty; BPTT's from its initial memory.
  expected = {**params, "readout": {"decoder": params["decoder"]}} if method == "smt" else params
  assert set(rnn.params) == {"updater", "readout"}
  jax.tree.map(np.testing.assert_array_equal, rnn.params, {g: expected[g] for g in rnn.params})
  models = CompiledModels(cfg)
  start = models.initial_memory if method == "bptt" else models.empty_memory
  np.testing.assert_allclose(rnn.m_start, start(expected, 1)[0], rtol=1e-6, atol=1e-6)
  for batch in (1, 3):  # Any batch size.
    m = jax.random.normal(jax.random.key(batch), (batch, rnn.config["mem_size"]))
    x = jnp.arange(batch, dtype=jnp.int32) % cfg.data.vocab_size
    np.testing.assert_allclose(rnn.step(m, x), models.step(expected, m, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rnn.read(m), models.read(expected, m), rtol=1e-5, atol=1e-5)


def test_export_of_a_pipeline_folder_names_its_stages(tmp_path, capsys):
  pipeline = strict(make_tiny_config())
  pipeline.pipeline.order = ("smt", "dmt")
  (tmp_path / "config.json").write_text(pipeline.to_json_best_effort())
  assert export.main([str(tmp_path), "--out", str(tmp_path / "x.npz")]) == 1
  assert "its stages are smt, dmt: pass --stage=STAGE" in capsys.readouterr().err
  assert not (tmp_path / "x.npz").exists()


@pytest.mark.integration
def test_exported_rnn_runs_with_numpy_and_jax_alone(tmp_path):
  cfg = make_tiny_config(method="dmt")
  params = save_run(tmp_path / "run", cfg)
  export.export_workdir(tmp_path / "run", tmp_path / "rnn.npz")
  script = """
import json, sys
import numpy as np
from jax import export
f = np.load(sys.argv[1])
meta = json.loads(f["config.json"].tobytes())
params = {}
for key in meta["params"]:
  node, *parts, leaf = key.split("/")[1:]
  node = params.setdefault(node, {})
  for part in parts:
    node = node.setdefault(part, {})
  node[leaf] = f[key]
step = export.deserialize(bytearray(f["step.jax_export"]))
read = export.deserialize(bytearray(f["read.jax_export"]))
m = np.tile(f["m_start"], (2, 1))
for token in (3, 1):
  m = step.call(params, m, np.full((2,), token, np.int32))
assert not any(name.startswith("smt_jax") for name in sys.modules)
np.save(sys.argv[2], np.asarray(read.call(params, m)))
"""
  subprocess.run(
    [sys.executable, "-c", script, str(tmp_path / "rnn.npz"), str(tmp_path / "l.npy")],
    check=True,
    cwd=tmp_path,
  )
  models = CompiledModels(cfg)
  m = models.empty_memory(params, 2)
  for token in (3, 1):
    m = models.step(params, m, jnp.full((2,), token, jnp.int32))
  np.testing.assert_allclose(
    np.load(tmp_path / "l.npy"), models.read(params, m), rtol=1e-5, atol=1e-5
  )


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*_gpu.py")))
def test_gpu_configs_build_and_trace_every_stage(name):
  cfg = load_config_file(str(CONFIGS / f"{name}.py"))
  assert cfg.model.d_model == 256 and cfg.model.mem_tokens == 16
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
  for stage in cfg.pipeline.order:
    run_cfg = stage_config(cfg, stage, "/tmp/unused")
    validate_model(run_cfg)
    params = jax.eval_shape(lambda k, c=run_cfg: init_params(c, k), key)
    B, T = run_cfg.train.batch_size, run_cfg.data.T
    batch = {n: jax.ShapeDtypeStruct((B, T), jnp.int32) for n in ("x", "y")}
    loss_fn = functools.partial(method_of(run_cfg).loss, cfg=run_cfg)
    loss, _ = jax.eval_shape(loss_fn, params, batch, key)
    assert loss.shape == () and loss.dtype == jnp.float32, (stage, loss)


def test_repro_run_all_only_takes_both_spellings_and_is_in_its_help(capsys):
  from experiments.repro import credit, run_all, state

  assert run_all.selected(["--only=credit", "--quick"]) == [credit.STUDY]
  assert run_all.selected(["--only", "credit,state"]) == [state.STUDY, credit.STUDY]
  assert run_all.selected(["--quick"]) == list(run_all.STUDIES.values())
  with pytest.raises(SystemExit, match="no study named"):
    run_all.selected(["--only=nope"])
  with pytest.raises(SystemExit) as e:
    run_all.main(["--help"])
  assert e.value.code == 0 and "--only" in capsys.readouterr().out


@pytest.mark.integration
def test_inference_benchmark_runs_on_a_tiny_grid(tmp_path):
  from experiments.bench import inference

  res = inference.main(["--quick", "--contexts", "8,16", "--batches", "1", "--out", str(tmp_path)])
  assert (tmp_path / "inference_cpu_quick.png").stat().st_size > 0
  assert json.loads((tmp_path / "inference_cpu_quick.json").read_text())["rows"] == json.loads(
    json.dumps(res["rows"])
  )
  d, blocks, z = (res["model"][k] for k in ("d_model", "transformer_blocks", "Z"))
  for row in res["rows"]:  # The cache grows with the context; the RNN's memory does not.
    assert row["transformer"]["step"]["state_bytes"] == 2 * blocks * row["context"] * d * 4
    assert row["rnn"]["step"]["state_bytes"] == z * 4
    for side in inference.SIDES:
      for mode in inference.MODES:
        assert len(row[side][mode]["round_s"]) == res["rounds"]
        assert row[side][mode]["tokens_per_s"] > 0


def test_a_negative_progress_interval_is_refused_naming_the_field():
  with pytest.raises(ConfigError, match=r"log\.progress_every_s=-1\.0 must be >= 0"):
    validate(make_tiny_config(**{"log.progress_every_s": -1.0}))
