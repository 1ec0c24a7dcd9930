"""A plain causal Transformer LM step (the benchmark's per-op speed reference), built from the
library's own blocks: d 128, depth 4, 4 heads, vocab 256, batch 32, T 128 at the reference."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from smt_jax.models.transformer import Transformer, causal_mask


class PlainLM(nn.Module):
  vocab_size: int
  d_model: int
  depth: int
  num_heads: int

  @nn.compact
  def __call__(self, x):
    h = nn.Embed(self.vocab_size, self.d_model)(x)
    L = x.shape[1]
    h = Transformer(self.depth, self.num_heads)(h, causal_mask(L), jnp.arange(L))
    return nn.Dense(self.vocab_size)(h)


def plain_step_fns(vocab=256, d_model=128, depth=4, num_heads=4):
  model = PlainLM(vocab, d_model, depth, num_heads)
  tx = optax.adamw(1e-4, weight_decay=0.01)

  def loss_fn(params, batch, rng):
    del rng
    logits = model.apply({"params": params}, batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, {}

  def init_state(rng):
    params = model.init(rng, jnp.zeros((1, 8), jnp.int32))["params"]
    return params, tx.init(params)

  def step(state, batch, rng):
    params, opt_state = state
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  return init_state, step, loss_fn
