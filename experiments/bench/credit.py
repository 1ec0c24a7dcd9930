"""Credit assignment: how strongly the loss at position t reaches the input at t - k.

We measure g(k) = || d loss_t / d e_{t-k} ||, where e_s is the input embedding vector the model
reads at position s. The models embed tokens internally, so we add a zero perturbation delta_s
to the *output* of the relevant `nn.Embed` call with Flax's `nn.intercept_methods` and
differentiate w.r.t. delta: d loss / d delta_s = d loss / d e_s exactly (delta = 0 leaves the
function unchanged). The perturbation is per example, so one backward pass gives every
example's gradient at every distance; we report the mean over examples of the per-example norm.

  * BPTT: the RNN scanned from its initial memory, delta_s added to the updater's token
    embedding at step s; loss_t = CE(read(m_t), y_t). The gradient crosses k updater steps.
  * DMT (the studies' recipe): the updater rolled out from m_empty, delta_s added to its token
    embedding at step s; loss_t = the squared error of the rolled memory m_t against the
    encoder's memory of x[0..t] (DMT's dense target). With gradients through the rollout the
    gradient crosses k updater steps, as BPTT's; with a stop-gradient on the memory before every
    update (dmt.grad_steps 1) it reaches k = 0 only.
  * SMT (encoder path): m_t = E(x[t-Tc+1 .. t]); loss_t = CE of the decoder's first prediction
    (an empty future, i.e. the readout) against y_t; delta added to the encoder's embedding of
    window position Tc - 1 - k. The gradient crosses one encoder and one decoder, for every k
    inside the window (and is exactly 0 beyond Tc: the window is SMT's horizon).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from smt_jax.models import build_models
from smt_jax.models import updaters as updater_modules
from smt_jax.models.teacher import Encoder
from smt_jax.objectives.windows import context_windows, memories_at

# The modules whose nn.Embed is the RNN updater's token embedding.
UPDATER_CORES = (
  updater_modules.TransformerTokenCore,
  updater_modules.MLPCore,
  updater_modules.CellCore,
)


def _add_to_embedding(owner_types, delta_fn):
  """Interceptor: adds delta_fn() to the output of nn.Embed modules whose parent is one of
  owner_types (matching the embedding's output shape)."""

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if (
      isinstance(module, nn.Embed)
      and context.method_name == "__call__"
      and isinstance(module.parent, owner_types)
    ):
      out = out + delta_fn().reshape(out.shape).astype(out.dtype)
    return out

  return interceptor


def bptt_credit(cfg, params, batch, t: int) -> jax.Array:
  """(t + 1,) mean per-example ||d loss_t / d e_{t-k}|| for k = 0..t, through the RNN."""
  models = build_models(cfg)
  x, y = batch["x"][:, : t + 1], batch["y"]
  B = x.shape[0]
  d = cfg.model.d_model if cfg.model.rnn.updater == "transformer" else cfg.model.rnn.hidden

  def loss(delta):  # delta (t + 1, B, d)
    def body(m, inp):
      xt, dt = inp
      with nn.intercept_methods(_add_to_embedding(UPDATER_CORES, lambda: dt)):
        m = models.step(params, m, xt)
      return m, None

    m, _ = jax.lax.scan(body, models.initial_memory(params, B), (x.T, delta))
    logits = models.read(params, m)
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, y[:, t]))

  g = jax.grad(loss)(jnp.zeros((t + 1, B, d), jnp.float32))  # (t+1, B, d)
  norms = jnp.mean(jnp.linalg.norm(g, axis=-1), axis=1)  # (t+1,) indexed by position s
  return norms[::-1]  # indexed by distance k = t - s


def dmt_credit(cfg, params, batch, t: int) -> jax.Array:
  """(t + 1,) mean per-example ||d loss_t / d e_{t-k}|| for k = 0..t, through DMT's rollout
  from m_empty (loss_t: squared error of m_t against the encoder's memory of x[0..t])."""
  models = build_models(cfg)
  x = batch["x"]
  B = x.shape[0]
  mems = jax.lax.stop_gradient(memories_at(models, params, x, np.array([-1, t])))
  if cfg.dmt.grad_steps not in (0, 1):
    raise ValueError(f"dmt.grad_steps={cfg.dmt.grad_steps}: the credit trace covers 0 and 1.")
  through = cfg.dmt.grad_steps == 0

  def loss(delta):  # delta (t + 1, B, d)
    def body(m, inp):
      xt, dt = inp
      m = m if through else jax.lax.stop_gradient(m)
      with nn.intercept_methods(_add_to_embedding(UPDATER_CORES, lambda: dt)):
        return models.step(params, m, xt), None

    m, _ = jax.lax.scan(body, mems[:, 0], (x[:, : t + 1].T, delta))
    return jnp.sum(jnp.mean(jnp.square(m - mems[:, 1]).reshape(B, -1), axis=-1))

  g = jax.grad(loss)(jnp.zeros((t + 1, B, cfg.model.d_model), jnp.float32))
  return jnp.mean(jnp.linalg.norm(g, axis=-1), axis=1)[::-1]  # indexed by distance k = t - s


def smt_encoder_credit(cfg, params, batch, t: int) -> jax.Array:
  """(Tc,) mean per-example ||d loss_t / d e_{t-k}|| for k = 0..Tc-1, through encoder+decoder."""
  models = build_models(cfg)
  tc = cfg.model.teacher.Tc
  x, y = batch["x"], batch["y"]
  B = x.shape[0]
  window = context_windows(x, jnp.full((B, 1), t), tc)[:, 0]  # (B, Tc)

  def loss(delta):  # (B, Tc, d)
    with nn.intercept_methods(_add_to_embedding((Encoder,), lambda: delta)):
      m = models.encode(params, window)
    logits = models.decode(params, m, jnp.zeros((B, 0), jnp.int32))[:, 0]
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, y[:, t]))

  g = jax.grad(loss)(jnp.zeros((B, tc, cfg.model.d_model), jnp.float32))
  norms = jnp.mean(jnp.linalg.norm(g, axis=-1), axis=0)  # (Tc,) by window position
  return norms[::-1]  # by distance k = Tc - 1 - position


def delayed_copy_batch(rng, batch_size: int, T: int, vocab: int, lag: int) -> dict:
  """y_t = x_{t - lag} (no label for t < lag): solving it needs credit across `lag` steps."""
  x = jax.random.randint(rng, (batch_size, T), 0, vocab, dtype=jnp.int32)
  y = jnp.concatenate([jnp.full((batch_size, lag), -1, jnp.int32), x[:, : T - lag]], axis=1)
  return {"x": x, "y": y}
