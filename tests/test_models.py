"""Modules against hand-computed references: masking, causality, memory normalisation, updaters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_tiny_config

from smt_jax.errors import ConfigError
from smt_jax.models import UPDATER_NAMES, build_models, init_params, mem_size, memory
from smt_jax.objectives import losses
from smt_jax.objectives.windows import context_windows, futures
from smt_jax.train.validate import validate_model


@pytest.fixture(scope="module")
def tiny():
  cfg = make_tiny_config()
  return cfg, build_models(cfg), init_params(cfg, jax.random.key(0))


def test_padding_is_invisible_to_the_encoder(tiny):
  """[-1, -1, a, b] encodes exactly as [a, b]: masked keys get no weight and positions are
  relative to the window end (registers follow the tokens)."""
  _, models, params = tiny
  padded = models.encode(params, jnp.array([[-1, -1, 3, 5]]))
  short = models.encoder.apply({"params": params["encoder"]}, jnp.array([[3, 5]]))
  np.testing.assert_allclose(padded, short, atol=1e-5)
  other_padding = models.encode(params, jnp.array([[-1, -1, 3, 5]]).at[0, 0].set(-1))
  np.testing.assert_array_equal(padded, other_padding)


def test_memory_ignores_tokens_outside_its_window(tiny):
  cfg, models, params = tiny
  x = jax.random.randint(jax.random.key(1), (1, cfg.data.T), 0, cfg.data.vocab_size)
  t = jnp.array([[6]])
  changed = x.at[0, 6 - cfg.model.teacher.Tc].set((x[0, 2] + 1) % cfg.data.vocab_size)
  changed = changed.at[0, 7].set((x[0, 7] + 1) % cfg.data.vocab_size)
  encode_at = lambda seq: models.encode(params, context_windows(seq, t, cfg.model.teacher.Tc)[:, 0])
  np.testing.assert_array_equal(encode_at(x), encode_at(changed))
  inside = x.at[0, 6].set((x[0, 6] + 1) % cfg.data.vocab_size)
  assert not np.allclose(encode_at(x), encode_at(inside))


def test_decoder_is_causal(tiny):
  cfg, models, params = tiny
  m = models.encode(params, jnp.array([[1, 2, 3, 4]]))
  logits = models.decode(params, m, jnp.array([[5, 6]]))
  changed = models.decode(params, m, jnp.array([[5, 0]]))
  np.testing.assert_allclose(logits[:, :2], changed[:, :2], atol=1e-6)
  assert not np.allclose(logits[:, 2], changed[:, 2])
  empty = jnp.zeros((1, 0), jnp.int32)
  np.testing.assert_allclose(logits[:, 0], models.decode(params, m, empty)[:, 0], atol=1e-5)
  copied = dict(params, readout={"decoder": params["decoder"]})  # Readout = decoder, no future.
  np.testing.assert_allclose(models.read(copied, m), logits[:, 0], atol=1e-5)


def test_windows_and_futures_by_hand():
  x = jnp.array([[10, 11, 12, 13, 14]])
  y = jnp.array([[0, -1, 2, 3, 4]])
  np.testing.assert_array_equal(
    context_windows(x, jnp.array([[1, 4]]), 3), [[[-1, 10, 11], [12, 13, 14]]]
  )
  inputs, targets = futures(x, y, jnp.array([[3]]), 3)
  np.testing.assert_array_equal(inputs, [[[14, -1]]])
  np.testing.assert_array_equal(targets, [[[3, 4, -1]]])


@pytest.mark.parametrize("kind", UPDATER_NAMES)
@pytest.mark.parametrize(
  "dtype", ["float32", pytest.param("bfloat16", marks=pytest.mark.integration)]
)
def test_every_updater_satisfies_the_interface(kind, dtype):
  cfg = make_tiny_config(
    **{"model.rnn.updater": kind, "model.dtype": dtype, "model.rnn.learned_init": kind == "mlp"}
  )
  models = build_models(cfg)
  params = init_params(cfg, jax.random.key(0))
  m0 = models.initial_memory(params, 3)
  assert m0.shape == (3, mem_size(cfg)) and m0.dtype == jnp.float32
  step = jax.jit(models.step)
  m1 = step(params, m0, jnp.array([0, 1, 6]))
  m2 = step(params, m1, jnp.array([2, 2, 2]))
  assert m2.shape == m0.shape and m2.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(m2)))
  rms = np.sqrt(np.mean(np.square(np.asarray(memory.unflatten(m2, 2))), axis=-1))
  np.testing.assert_allclose(rms, 1.0, atol=2e-2 if dtype == "bfloat16" else 1e-3)
  assert not np.allclose(m1[0], m1[1])  # The input token matters.


def test_elman_updater_equals_its_formula():
  cfg = make_tiny_config(**{"model.rnn.updater": "elman"})
  models = build_models(cfg)
  params = init_params(cfg, jax.random.key(0))
  p = params["updater"]["core"]
  m = jax.random.normal(jax.random.key(1), (2, 16))
  x = jnp.array([3, 4])
  pre = (
    m @ p["recurrent"]["kernel"]
    + p["embed"]["embedding"][x] @ p["input"]["kernel"]
    + p["input"]["bias"]
  )
  tokens = np.tanh(np.asarray(pre)).reshape(2, 2, 8)
  expected = tokens / np.sqrt(np.mean(tokens**2, axis=-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(models.step(params, m, x), expected.reshape(2, 16), atol=1e-5)


def test_learned_initial_memory_is_a_normalised_parameter():
  cfg = make_tiny_config(**{"model.rnn.learned_init": True})
  models = build_models(cfg)
  params = init_params(cfg, jax.random.key(0))
  raw = np.asarray(params["updater"]["init_memory"]).reshape(2, 8)
  expected = raw / np.sqrt(np.mean(raw**2, axis=-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(
    models.initial_memory(params, 2), np.tile(expected.reshape(1, 16), (2, 1)), atol=1e-5
  )


def test_fsq_rounds_to_levels_with_straight_through_gradient():
  x = jnp.linspace(-3.0, 3.0, 13)
  q = memory.quantize_fsq(x, 5)
  np.testing.assert_allclose(q, np.round(np.tanh(np.asarray(x)) * 2) / 2, atol=1e-6)
  grad = jax.grad(lambda v: jnp.sum(memory.quantize_fsq(v, 5)))(x)
  np.testing.assert_allclose(grad, (1 - np.tanh(np.asarray(x)) ** 2), atol=1e-5)


def test_uniformity_equals_brute_force():
  units = np.array(jax.random.normal(jax.random.key(0), (6, 3)))
  units /= np.linalg.norm(units, axis=1, keepdims=True)
  pairs = [
    np.exp(-2 * np.sum((units[a] - units[b]) ** 2)) for a in range(6) for b in range(6) if a != b
  ]
  np.testing.assert_allclose(
    losses.uniformity(jnp.asarray(units)), np.log(np.mean(pairs)), rtol=1e-5
  )


def test_masked_cross_entropy_and_accuracy_by_hand():
  logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [9.0, 9.0, -9.0]])
  labels = jnp.array([0, 2, -1])
  loss, count = losses.masked_cross_entropy(logits, labels)
  expected = (-np.log(np.exp(2) / (np.exp(2) + 2)) - np.log(1 / (np.exp(3) + 2))) / 2
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  assert int(count) == 2
  np.testing.assert_allclose(losses.masked_accuracy(logits, labels), 0.5)
  changed = logits.at[2].set(jnp.array([-5.0, 7.0, 1.0]))  # Only the unlabelled row changes.
  np.testing.assert_allclose(losses.masked_cross_entropy(changed, labels)[0], loss)


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("model.d_model", 10, "model.d_model / model.num_heads = 5 must be even"),
    ("model.rnn.updater", "rwkv", "model.rnn.updater='rwkv' is unknown"),
    ("model.teacher.Tc", 9, "model.teacher.Tc=9 must be in [1, data.T = 8]"),
    ("model.teacher.Tf", 9, "model.teacher.Tf=9 must be in [1, data.T = 8]"),
    ("dmt.k", 9, "dmt.k=9 must be in [1, dmt.Td"),
    ("model.rnn.readout_depth", 2, "model.rnn.readout_depth=2 must equal"),
  ],
)
def test_model_validation_names_the_field(field, value, message):
  with pytest.raises(
    ConfigError,
    match=message.replace("[", r"\[")
    .replace("(", r"\(")
    .replace(")", r"\)")
    .replace("*", r"\*")
    .replace("+", r"\+"),
  ):
    validate_model(make_tiny_config(**{field: value}))


def test_fsq_rounds_to_the_grid_with_a_straight_through_gradient():
  x = jnp.array([0.0, 0.3, 2.0, -0.8])
  q = memory.quantize_fsq(x, 3)  # half = 1: tanh(x) rounded to {-1, 0, 1}.
  np.testing.assert_array_equal(q, [0.0, 0.0, 1.0, -1.0])
  grad = jax.grad(lambda v: jnp.sum(memory.quantize_fsq(v, 3)))(x)
  np.testing.assert_allclose(grad, 1.0 - np.tanh(np.asarray(x)) ** 2, rtol=1e-6)


@pytest.mark.integration
def test_fsq_memories_take_at_most_levels_values_per_token():
  cfg = make_tiny_config(**{"model.fsq_levels": 5})
  models = build_models(cfg)
  params = init_params(cfg, jax.random.key(0))
  m = models.encode(params, jax.random.randint(jax.random.key(1), (3, 4), 0, 7))
  tokens = np.asarray(m).reshape(3, cfg.model.mem_tokens, -1)
  for token in tokens.reshape(-1, tokens.shape[-1]):  # RMS norm rescales, keeps the grid's shape
    assert len(np.unique(np.round(token, 5))) <= 5
