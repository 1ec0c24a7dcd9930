"""smt_jax against the PyTorch original (akarshkumar0101/smt), without torch: the fixture
tests/fixtures/original_tiny.npz holds the original's weights, one batch per method and its
outputs (experiments/interop/make_fixture.py wrote it with torch installed). Its weights are
mapped through smt_jax.interop.mapping, as the importer maps a checkpoint, and every output of
smt_jax with the original's options must match the original's to float32 precision."""

import pathlib

import jax
import numpy as np
import pytest
from conftest import load_config

from smt_jax.interop import compare, import_original, mapping
from smt_jax.models import init_params
from smt_jax.train.validate import validate_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "original_tiny.npz"
VALUE_RTOL = 2e-5  # |ours - original| / (largest |original| of the quantity)
GRAD_RTOL, GRAD_ATOL = 2e-5, 1e-6  # per tensor: |d norm|, |d sum| <= RTOL * norm + ATOL


@pytest.fixture(scope="module")
def results():
  return compare.outputs(str(FIXTURE))


@pytest.fixture(scope="module")
def fixture_parts():
  return compare.load(str(FIXTURE))


def test_the_fixture_covers_every_quantity_compared(results):
  _, theirs = results
  for name in (
    [
      "teacher memory",
      "teacher decoder logits",
      "teacher readout logits",
      "rnn update",
      "rnn readout logits",
      "bptt loss",
      "bptt logits",
      "train_smt losses (0, 1, 2 updates)",
    ]
    + [f"smt {t}" for t in ("loss", "loss_decoder", "loss_dyn", "loss_unif")]
    + [
      f"dmt(detach_rnn={f}) {t}"
      for f in (True, False)
      for t in ("loss", "loss_readout", "loss_dyn", "loss_decoder", "loss_unif")
    ]
  ):
    assert name in theirs, name
  for case in ("smt", "dmt(detach_rnn=True)", "dmt(detach_rnn=False)", "bptt"):
    assert sum(k.startswith(f"{case} grad ") for k in theirs) >= 20, case
  # The checks are not vacuous: the DMT flag changes the original's gradients, the two updates
  # change its loss, and its per-module clipping (0.5) is active.
  flag = lambda f: np.array(
    [v for k, v in sorted(theirs.items()) if k.startswith(f"dmt(detach_rnn={f}) grad rnn/rnn.")]
  )
  assert np.abs(flag(True) - flag(False)).max() > 1e-3
  losses = theirs["train_smt losses (0, 1, 2 updates)"]
  assert abs(losses[2] - losses[0]) > 1e-3
  teacher_norm = np.sqrt(
    sum(v[0] ** 2 for k, v in theirs.items() if k.startswith("smt grad teacher/"))
  )
  assert teacher_norm > 0.5


def test_every_value_matches_the_original(results):
  ours, theirs = results
  diffs = compare.differences(ours, theirs)
  bad = {k: v for k, v in diffs.items() if " grad " not in k and v[1] > VALUE_RTOL}
  assert not bad, bad


def test_every_gradient_matches_the_original(results):
  ours, theirs = results
  bad = {
    k: (ours[k], theirs[k])
    for k in theirs
    if " grad " in k and np.abs(ours[k] - theirs[k]).max() > GRAD_RTOL * theirs[k][0] + GRAD_ATOL
  }
  assert not bad, bad


@pytest.mark.integration
@pytest.mark.parametrize("option", ["decay_all", "clip_per_model"])
def test_the_original_optimizer_options_are_needed(option, fixture_parts):
  """Without either option, two updates drift from the original's far beyond the tolerance."""
  losses = compare.train_losses(str(FIXTURE), **{option: False})
  expected = fixture_parts[3]["out/train_smt/losses"]
  assert np.abs(losses - expected).max() / np.abs(expected).max() > 5 * VALUE_RTOL


def test_our_default_architecture_does_not_match(fixture_parts):
  """The options matter: without partial rotary the same weights give other memories."""
  sizes, teacher, rnn, ref = fixture_parts
  cfg = compare.config(sizes, teacher, rnn)
  params = mapping.to_params(cfg, teacher, rnn)
  cfg.model.rotary_fraction = 1.0
  from smt_jax.models import build_models

  m = build_models(cfg).encode(params, ref["batch/enc_x"])
  assert np.abs(np.asarray(m) - ref["out/teacher/memory"]).max() > 1e-3


def test_a_tensor_without_a_place_and_a_place_without_a_tensor_are_named(fixture_parts):
  sizes, teacher, rnn, _ = fixture_parts
  cfg = compare.config(sizes, teacher, rnn)
  broken = dict(teacher)
  broken["decoder.layers.0.1.to_qkv.weight"] = broken.pop("decoder.layers.0.1.to_q.weight")
  with pytest.raises(mapping.MappingError) as e:
    mapping.to_params(cfg, broken, rnn)
  message = str(e.value)
  assert "teacher tensor 'decoder.layers.0.1.to_qkv.weight' (128, 8) has no place" in message
  assert (
    "smt_jax parameter decoder/transformer/block_0/attn/query/kernel (8, 2, 64) has no "
    "tensor: teacher has no 'decoder.layers.0.1.to_q.weight'"
  ) in message


def test_a_tensor_of_the_wrong_shape_is_named_with_its_place(fixture_parts):
  sizes, teacher, rnn, _ = fixture_parts
  cfg = compare.config(sizes, teacher, rnn)
  broken = dict(rnn, **{"to_logits.bias": np.zeros(3, np.float32)})
  broken["rnn.layers.0.1.to_q.weight"] = np.zeros((100, 8), np.float32)  # Not 2 heads of 64.
  with pytest.raises(mapping.MappingError) as e:
    mapping.to_params(cfg, teacher, broken)
  assert (
    "rnn tensor 'to_logits.bias' (3,) does not fit smt_jax parameter "
    "readout/decoder/head/bias (11,)"
  ) in str(e.value)
  assert (
    "rnn tensor 'rnn.layers.0.1.to_q.weight' (100, 8) does not fit smt_jax parameter "
    "updater/core/transformer/block_0/attn/query/kernel (8, 2, 64)"
  ) in str(e.value)


def test_rotary_frequencies_other_than_ours_are_refused(fixture_parts):
  sizes, teacher, rnn, _ = fixture_parts
  cfg = compare.config(sizes, teacher, rnn)
  broken = dict(
    teacher, **{"encoder.rotary_pos_emb.inv_freq": teacher["encoder.rotary_pos_emb.inv_freq"] * 2}
  )
  with pytest.raises(mapping.MappingError, match="rotary frequencies differ"):
    mapping.to_params(cfg, broken, rnn)


def test_every_parameter_is_filled(fixture_parts):
  sizes, teacher, rnn, _ = fixture_parts
  cfg = compare.config(sizes, teacher, rnn)
  params = mapping.to_params(cfg, teacher, rnn)
  fresh = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  shapes = lambda t: jax.tree.map(lambda a: tuple(a.shape), t)
  assert shapes(params) == shapes(fresh)


@pytest.mark.integration
def test_import_writes_a_workdir_that_evaluation_and_dmt_read(fixture_parts, tmp_path):
  from smt_jax.checkpointing import load_params
  from smt_jax.eval.suite import load_run_config
  from smt_jax.objectives import smt_loss
  from smt_jax.train.loop import initial_params

  sizes, teacher, rnn, ref = fixture_parts
  read = {
    "teacher": teacher,
    "rnn": rnn,
    "cfg": None,
    "itr": 7,
    "norm_offset": None,
    "source": "fixture",
  }
  overrides = {"model.teacher.Tc": sizes["Tc"], "model.teacher.Tf": sizes["Tf"]}
  out = import_original.write_workdir(read, str(tmp_path / "imported"), overrides)
  assert out["step"] == 7
  cfg = load_run_config(str(tmp_path / "imported"))
  validate_model(cfg)
  assert cfg.data.T == sizes["Tc"] + sizes["Tf"] and cfg.smt.timestep == sizes["Tc"] - 1
  assert cfg.model.head_dim == 64 and cfg.model.teacher.shared_embed
  params, step = load_params(str(tmp_path / "imported"))
  assert step == 7
  batch = {"x": ref["batch/smt_x"], "y": ref["batch/smt_y"]}
  loss, _ = smt_loss(params, batch, jax.random.key(0), cfg)
  np.testing.assert_allclose(loss, ref["out/smt/loss"], rtol=VALUE_RTOL)

  dmt = load_config(ROOT / "experiments" / "interop" / "original_dmt.py", tmp_path / "imported")
  dmt.dmt.Td = sizes["Td"]
  assert dmt.data.T == sizes["Tc"] + sizes["Td"] + sizes["Tf"]
  validate_model(dmt)
  start = initial_params(dmt, jax.random.key(1))
  jax.tree.map(np.testing.assert_array_equal, start, params)


def test_reading_a_checkpoint_without_torch_names_the_extra(monkeypatch, tmp_path):
  import builtins

  real_import = builtins.__import__

  def no_torch(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
      raise ImportError("No module named 'torch'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_torch)
  (tmp_path / "checkpoint.pt").write_bytes(b"")
  with pytest.raises(ImportError, match=r"pip install 'smt_jax\[torch\]'"):
    import_original.read_checkpoint(str(tmp_path / "checkpoint.pt"))


def test_the_originals_config_unpickles_without_its_source(monkeypatch):
  """Classes other than torch's (the original's Config, x-transformers' modules) load as stubs
  that keep their attributes, so neither the original's source nor x-transformers is needed."""
  import dataclasses
  import io
  import pickle
  import sys
  import types

  fake = types.ModuleType("fake_original_model")
  SMTConfig = dataclasses.make_dataclass("SMTConfig", [("Tc", int), ("Tf", int)])
  Config = dataclasses.make_dataclass("Config", [("dataset", str), ("smt", object)])
  for cls in (SMTConfig, Config):
    cls.__module__ = fake.__name__
    setattr(fake, cls.__name__, cls)
  monkeypatch.setitem(sys.modules, fake.__name__, fake)
  blob = pickle.dumps({"cfg": Config("kjv", SMTConfig(32, 16)), "itr": 20})
  monkeypatch.delitem(sys.modules, fake.__name__)
  loaded = import_original.Unpickler(io.BytesIO(blob)).load()
  assert isinstance(loaded["cfg"], import_original.Stub) and loaded["itr"] == 20
  assert loaded["cfg"].dataset == "kjv" and (loaded["cfg"].smt.Tc, loaded["cfg"].smt.Tf) == (32, 16)
