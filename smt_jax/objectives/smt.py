"""Supervised Memory Training: every term is computed for many timesteps at once; the RNN is
never unrolled, so no gradient path crosses more than one updater application."""

import jax
import jax.numpy as jnp
import ml_collections

from smt_jax.models import build_models, memory
from smt_jax.objectives import losses
from smt_jax.objectives.windows import all_memories, encoder_memories, futures, over_time


def sample_timesteps(rng: jax.Array, batch_size: int, num_positions: int, n: int) -> jax.Array:
  """n distinct positions per sequence, uniform in [0, num_positions): int32 (B, n)."""
  keys = jax.random.split(rng, batch_size)
  return jax.vmap(lambda k: jax.random.choice(k, num_positions, (n,), replace=False))(keys)


def uniformity_of(rng: jax.Array, memories: jax.Array, mem_tokens: int, max_tokens: int):
  """Uniformity loss over the unit-normalised tokens of memories (..., Z), at most max_tokens of
  them (a random subset when there are more)."""
  units = memory.unit_tokens(memories, mem_tokens)
  if units.shape[0] > max_tokens:
    units = units[jax.random.permutation(rng, units.shape[0])[:max_tokens]]
  return losses.uniformity(units)


def smt_loss(params: dict, batch: dict, rng: jax.Array, cfg: ml_collections.ConfigDict):
  """c_dec * CE(D(m_t, x_fut), y_fut) + c_dyn * MSE(f(m_t, x_{t+1}), m_{t+1}) + c_unif * L_unif.

  m_t = E(x[t - Tc + 1 .. t]) for t = -1 .. T - 1, left-padded before x[0]; m_{-1} = m_empty
  (all padding). Its decoder predicts y[0 ..] from x[0 ..], and f(m_empty, x_0) ~ m_0 is a
  dynamics pair like every other. Uniformity covers every memory encoded (m_empty included).

  Args:
    params: {"encoder", "decoder", "updater", ...} parameter groups.
    batch: {"x": int32 (B, T), "y": int32 (B, T), -1 = no label}.
    rng: PRNG key (timestep and uniformity subsets).
    cfg: the full config (model, data.vocab_size, smt).
  Returns:
    (loss, metrics) with every loss term, the decoder loss and accuracy on the first future
    target (what an RNN readout can reach), and the number of labelled decoder targets.
  """
  models = build_models(cfg)
  s, tf = cfg.smt, cfg.model.teacher.Tf
  x, y = batch["x"], batch["y"]
  batch_size, length = x.shape
  rng_t, rng_unif = jax.random.split(rng)

  if s.n_t == 0 and s.timestep < 0:  # Every position: window t serves as m_t and as m_{t+1}.
    t = jnp.broadcast_to(jnp.arange(-1, length), (batch_size, length + 1))
    mems = all_memories(models, params, x, -1, s.remat_encoder)
    m_now, m_next, x_next = mems[:, :-1], mems[:, 1:], x
    m_dec, t_dec = mems, t
    if s.n_dec:  # Decode a random subset of the memories; dynamics and uniformity see them all.
      pick = sample_timesteps(jax.random.fold_in(rng_t, 1), batch_size, length + 1, s.n_dec)
      m_dec = jnp.take_along_axis(mems, pick[:, :, None], axis=1)
      t_dec = jnp.take_along_axis(t, pick, axis=1)
  else:
    if s.timestep >= 0:  # One fixed timestep (the original's forward_smt: Tc - 1).
      t = jnp.full((batch_size, 1), s.timestep, jnp.int32)
    else:
      t = sample_timesteps(rng_t, batch_size, length, s.n_t) - 1  # In [-1, T - 2].
    n = t.shape[1]
    mems = encoder_memories(models, params, x, jnp.concatenate([t, t + 1], axis=1), s.remat_encoder)
    m_now, m_next = mems[:, :n], mems[:, n:]
    x_next = jnp.take_along_axis(x, t + 1, axis=1)
    m_dec, t_dec = m_now, t
    if s.timestep >= 0:
      mems = m_now  # The original's uniformity term sees m_t only.

  fut_inputs, fut_targets = futures(x, y, t_dec, tf)
  logits = over_time(lambda m, xf: models.decode(params, m, xf))(m_dec, fut_inputs)
  loss_dec, num_labels = losses.masked_cross_entropy(logits, fut_targets)
  loss_dec_first, _ = losses.masked_cross_entropy(logits[:, :, 0], fut_targets[:, :, 0])

  predicted = over_time(lambda m, xt: models.step(params, m, xt))(m_now, x_next)
  if s.detach_labels:
    m_next = jax.lax.stop_gradient(m_next)
  loss_dyn = losses.mse(predicted, m_next)

  loss_unif = uniformity_of(rng_unif, mems, cfg.model.mem_tokens, s.unif_tokens)
  loss = s.coef_dec * loss_dec + s.coef_dyn * loss_dyn + s.coef_unif * loss_unif
  return loss, {
    "loss": loss,
    "loss_dec": loss_dec,
    "loss_dyn": loss_dyn,
    "loss_unif": loss_unif,
    "loss_dec_first": loss_dec_first,
    "acc_dec_first": losses.masked_accuracy(logits[:, :, 0], fut_targets[:, :, 0]),
    "num_labels": num_labels,
  }
