"""The streaming encoder against per-prefix references (values and gradients), with the default
and the PyTorch original's block options, and the cheaper window mode (length buckets, per-block
remat) against the plain one."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_tiny_config, random_batch

from smt_jax.models import build_models, init_params, memory
from smt_jax.models.transformer import BlockOptions, Transformer
from smt_jax.objectives import dmt, smt
from smt_jax.objectives.windows import all_memories, bucket_lengths, encoder_memories

ATOL, RTOL = 2e-5, 2e-4
# The PyTorch original's block options at the tiny size (d 8, 2 heads), all away from the defaults.
ORIGINAL = {
  "model.head_dim": 8,
  "model.rotary_fraction": 0.5,
  "model.exact_gelu": True,
  "model.norm_eps": 0.0,
  "model.teacher.register_std": 1.0,
}


def _grads_close(a, b):
  """Float32 gradients summed over many terms: an absolute tolerance relative to the largest
  entry of the array (single entries near 0 carry the rounding of the large ones)."""
  scale = max(1.0, float(np.max(np.abs(b))))
  np.testing.assert_allclose(a, b, atol=ATOL * scale, rtol=RTOL)


def _values_and_grads(f, params, weights):
  """f(params) and the encoder's gradient of sum(weights * f(params)), in one compiled call
  (half the compiles of jitting the value and the gradient apart)."""

  def both(p):
    out, vjp = jax.vjp(f, p)
    return out, vjp(weights.astype(out.dtype))[0]["encoder"]

  return jax.jit(both)(params)


def _assert_values_and_grads_close(got, want):
  """Two (values, encoder gradients) pairs from `_values_and_grads`."""
  np.testing.assert_allclose(got[0], want[0], atol=ATOL, rtol=RTOL)
  jax.tree.map(_grads_close, got[1], want[1])


def _stream_config(**overrides):
  base = {
    "model.teacher.encoder": "stream",
    "model.teacher.encoder_depth": 2,
    "model.mem_tokens": 3,
    "data.T": 7,
  }
  return make_tiny_config(**{**base, **overrides})


def dense_prefix_memory(enc_params, prefix, cfg):
  """An independent reference for the memory of the last position of `prefix` (B, L), L >= 0:
  one dense masked Transformer over [tokens; K registers] (the window encoder's layout), with
  the streaming encoder's mask written out: token s attends tokens s' in (s - Tc, s]; the
  registers attend the last Tc tokens and each other; tokens never attend registers."""
  m, tc = cfg.model, cfg.model.teacher.Tc
  batch, length = prefix.shape
  k = m.mem_tokens
  emb = enc_params["embed"]["embedding"][prefix]
  regs = jnp.broadcast_to(enc_params["registers"], (batch, k, m.d_model))
  h = jnp.concatenate([emb, regs], axis=1)
  mask = np.zeros((length + k, length + k), bool)
  for i in range(length):
    for j in range(length):
      mask[i, j] = i - tc < j <= i
  for i in range(length, length + k):
    for j in range(length):
      mask[i, j] = j > length - 1 - tc
    mask[i, length:] = True
  options = BlockOptions(m.head_dim, m.rotary_fraction, m.exact_gelu, m.norm_eps)
  trunk = Transformer(
    m.teacher.encoder_depth, m.num_heads, m.mlp_ratio, options=options, name="transformer"
  )
  h = trunk.apply(
    {"params": enc_params["transformer"]}, h, jnp.asarray(mask), jnp.arange(len(h[0]))
  )
  return memory.finalize(h[:, length:], m.fsq_levels)


def _loop_memories(cfg, params, x, per_prefix):
  """Memories of positions -1 .. T - 1, each computed from its own prefix x[:, :t + 1]."""
  return jnp.stack([per_prefix(params, x[:, : t + 1]) for t in range(-1, x.shape[1])], axis=1)


def _scaled_residuals(params: dict, scale: float) -> dict:
  """params with the encoder's embedding, registers and attention / MLP output layers times
  `scale`, so its residual stream has RMS ~scale: at 1e-3 the epsilon of every RMSNorm changes
  the memories by more than the tolerance (the final norm's only with FSQ, as without it
  `memory.finalize` re-normalises each token)."""

  def scaled(path, leaf):
    names = {getattr(k, "key", None) for k in path}
    return leaf * scale if names & {"embed", "registers", "out", "down"} else leaf

  return {**params, "encoder": jax.tree_util.tree_map_with_path(scaled, params["encoder"])}


@pytest.mark.parametrize(
  "tc, chunk, options, scale",
  [
    (7, 0, {}, 1.0),
    (7, 3, {}, 1.0),
    (4, 0, {}, 1.0),
    # Window and chunks, and the original's options: each also in the last case (slow: CI time).
    pytest.param(3, 2, {}, 1.0, marks=pytest.mark.slow),
    pytest.param(7, 0, ORIGINAL, 1.0, marks=pytest.mark.slow),
    (3, 2, {**ORIGINAL, "model.fsq_levels": 4}, 1e-3),
  ],
  ids=[
    "causal",
    "causal-chunk3",
    "window4",
    "window3-chunk2",
    "causal-orig",
    "window3-chunk2-orig-small-fsq",
  ],
)
@pytest.mark.integration
def test_stream_matches_dense_reference_on_each_prefix(tc, chunk, options, scale):
  cfg = _stream_config(**{"model.teacher.Tc": tc, "model.teacher.stream_chunk": chunk, **options})
  models = build_models(cfg)
  params = _scaled_residuals(init_params(cfg, jax.random.key(0)), scale)
  x = random_batch(jax.random.key(1), 2, cfg.data.T, cfg.data.vocab_size)["x"]
  weights = jax.random.normal(jax.random.key(2), (2, cfg.data.T + 1, 3 * cfg.model.d_model))

  one_pass = lambda p: models.encode_stream(p, x)
  reference = lambda p: _loop_memories(
    cfg, p, x, lambda q, prefix: dense_prefix_memory(q["encoder"], prefix, cfg)
  )
  _assert_values_and_grads_close(
    _values_and_grads(one_pass, params, weights), _values_and_grads(reference, params, weights)
  )


@pytest.mark.integration
def test_stream_equals_itself_applied_to_each_prefix_values_and_gradients():
  """One pass == the same encoder run on each prefix separately."""
  cfg = _stream_config(**{"model.teacher.Tc": 4})
  models = build_models(cfg)
  params = init_params(cfg, jax.random.key(0))
  x = random_batch(jax.random.key(1), 2, cfg.data.T, cfg.data.vocab_size)["x"]
  weights = jax.random.normal(jax.random.key(2), (2, cfg.data.T + 1, 3 * cfg.model.d_model))
  one_pass = lambda p: models.encode_stream(p, x)
  looped = lambda p: _loop_memories(
    cfg, p, x, lambda q, prefix: models.encode_stream(q, prefix)[:, -1]
  )
  _assert_values_and_grads_close(
    _values_and_grads(one_pass, params, weights), _values_and_grads(looped, params, weights)
  )


@pytest.mark.integration
@pytest.mark.parametrize("options", [{}, ORIGINAL], ids=["default", "original"])
def test_stream_padding_and_empty_past_match_the_window_encoder_where_they_coincide(options):
  cfg = _stream_config(**{"model.teacher.Tc": 4, "model.teacher.encoder_depth": 1, **options})
  window_cfg = make_tiny_config(**{"model.mem_tokens": 3, "data.T": 7, **options})
  stream, window = build_models(cfg), build_models(window_cfg)
  params = init_params(cfg, jax.random.key(0))
  # One parameter tree serves both encoders, shapes included.
  other = init_params(window_cfg, jax.random.key(0))
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, other)
  # The empty past: registers that read no token, as the window encoder's all-padding window.
  empty = jnp.full((2, 4), -1, jnp.int32)
  np.testing.assert_allclose(
    stream.encode(params, empty), window.encode(params, empty), atol=ATOL, rtol=RTOL
  )
  # Left padding is masked: a padded window has the memory of its valid tokens.
  padded = jnp.array([[-1, -1, 3, 5], [-1, 1, 2, 6]])
  short = [jnp.array([[3, 5]]), jnp.array([[1, 2, 6]])]
  for b in range(2):
    np.testing.assert_allclose(
      stream.encode(params, padded[b : b + 1]),
      stream.encode(params, short[b]),
      atol=ATOL,
      rtol=RTOL,
    )
  # encoder_memories picks the one-pass memories, position -1 included; with one block (the
  # registers read embeddings only) they equal the encoder on each position's own window.
  x = random_batch(jax.random.key(1), 2, cfg.data.T, cfg.data.vocab_size)["x"]
  t = jnp.array([[-1, 0, 3, 6], [2, 5, -1, 4]])
  got = jax.jit(lambda p: encoder_memories(stream, p, x, t))(params)
  for b in range(2):
    for i in range(t.shape[1]):
      ti = int(t[b, i])
      win = jnp.array([[int(x[b, s]) if s >= 0 else -1 for s in range(ti - 3, ti + 1)]])
      np.testing.assert_allclose(got[b, i], stream.encode(params, win)[0], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(
  "option, value",
  [
    pytest.param("model.rotary_fraction", 0.5, marks=pytest.mark.integration),
    ("model.exact_gelu", True),
    ("model.norm_eps", 0.0),
  ],
)
def test_each_block_option_changes_the_stream_memories(option, value):
  """Same parameters, one option changed: the memories move by more than the tolerance of the
  reference tests, so the option is not silently ignored."""
  cfg = _stream_config(**{"model.teacher.Tc": 4})
  params = init_params(cfg, jax.random.key(0))
  x = random_batch(jax.random.key(1), 2, cfg.data.T, cfg.data.vocab_size)["x"]
  default = build_models(cfg).encode_stream(params, x)
  changed = build_models(_stream_config(**{"model.teacher.Tc": 4, option: value}))
  assert not np.allclose(changed.encode_stream(params, x), default, atol=ATOL, rtol=RTOL)


def test_register_std_scales_the_stream_registers_init():
  """The init-time options: register_std here; head_dim by the parameter shapes above."""
  p0 = init_params(_stream_config(), jax.random.key(0))["encoder"]
  p1 = init_params(_stream_config(**{"model.teacher.register_std": 1.0}), jax.random.key(0))
  np.testing.assert_allclose(p1["encoder"]["registers"], 50 * p0["registers"], rtol=1e-5)


@pytest.mark.integration
@pytest.mark.parametrize("first", [0, -1])
@pytest.mark.parametrize("tc, buckets", [(4, 3), (8, 8), (5, 4)])
def test_bucketed_window_encoding_equals_unbucketed(tc, buckets, first):
  over = {"model.teacher.Tc": tc, "data.T": 9, "model.teacher.encoder_depth": 2}
  cfg = make_tiny_config(**over)
  plain = build_models(cfg)
  bucketed = build_models(make_tiny_config(**over, **{"model.teacher.buckets": buckets}))
  assert bucketed.buckets == buckets
  params = init_params(cfg, jax.random.key(0))
  x = random_batch(jax.random.key(1), 2, cfg.data.T, cfg.data.vocab_size)["x"]
  w = jax.random.normal(jax.random.key(2), (2, cfg.data.T - first, cfg.model.mem_tokens * 8))
  f = lambda models: lambda p: all_memories(models, p, x, first)
  _assert_values_and_grads_close(
    _values_and_grads(f(bucketed), params, w), _values_and_grads(f(plain), params, w)
  )


def test_bucket_lengths():
  assert bucket_lengths(32, 1) == [32]
  assert bucket_lengths(32, 3) == [32, 16, 8]
  assert bucket_lengths(5, 9) == [5, 3, 2, 1]


def _loss_and_grads(cfg, batch, loss_fn=smt.smt_loss):
  params = init_params(cfg, jax.random.key(0))
  fn = jax.jit(jax.value_and_grad(functools.partial(loss_fn, cfg=cfg), has_aux=True))
  (loss, metrics), grads = fn(params, batch, jax.random.key(3))
  return loss, metrics, grads


@pytest.mark.parametrize(
  "extra",
  [
    {"model.teacher.remat_blocks": True},
    {"model.teacher.remat_blocks": True, "model.teacher.encoder": "stream"},
    {"model.teacher.buckets": 3, "smt.remat_encoder": True},
  ],
  ids=["remat-window", "remat-stream", "buckets"],
)
@pytest.mark.integration
def test_cheaper_encodings_leave_the_smt_loss_and_gradients_unchanged(extra):
  base = {"model.teacher.encoder_depth": 2, "data.T": 9, "model.teacher.Tc": 5}
  if extra.get("model.teacher.encoder") == "stream":
    base["model.teacher.encoder"] = "stream"
  batch = random_batch(jax.random.key(1), 2, 9, 7)
  loss0, _, g0 = _loss_and_grads(make_tiny_config(**base), batch)
  loss1, _, g1 = _loss_and_grads(make_tiny_config(**{**base, **extra}), batch)
  np.testing.assert_allclose(loss1, loss0, atol=ATOL, rtol=RTOL)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=ATOL, rtol=RTOL), g1, g0)


@pytest.mark.integration
def test_decoding_a_subset_of_memories():
  base = {"model.teacher.encoder": "stream", "data.T": 9, "model.teacher.Tc": 5}
  batch = random_batch(jax.random.key(1), 2, 9, 7, label_every=1)
  loss0, m0, _ = _loss_and_grads(make_tiny_config(**base), batch)
  # All T + 1 memories (positions -1..T-1) in a random order: the same mean decoder loss.
  _, m_all, _ = _loss_and_grads(make_tiny_config(**{**base, "smt.n_dec": 10}), batch)
  np.testing.assert_allclose(m_all["loss_dec"], m0["loss_dec"], atol=ATOL, rtol=RTOL)
  # A subset: fewer decoder labels, the dynamics term untouched.
  _, m3, _ = _loss_and_grads(make_tiny_config(**{**base, "smt.n_dec": 3}), batch)
  assert int(m3["num_labels"]) < int(m0["num_labels"])
  np.testing.assert_allclose(m3["loss_dyn"], m0["loss_dyn"], atol=ATOL, rtol=RTOL)


@pytest.mark.integration
@pytest.mark.parametrize("n_t", [0, 3])
def test_stream_teacher_trains_smt_and_dmt(n_t):
  cfg = _stream_config(**{"smt.n_t": n_t, "model.teacher.Tc": 4})
  batch = random_batch(jax.random.key(1), 2, cfg.data.T, cfg.data.vocab_size)
  for loss_fn in (smt.smt_loss, dmt.dmt_loss):
    loss, _, grads = _loss_and_grads(cfg, batch, loss_fn)
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
