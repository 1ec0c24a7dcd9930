"""Loss terms shared by the objectives: masked cross-entropy and accuracy, MSE, uniformity."""

import jax
import jax.numpy as jnp
import optax


def masked_cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean cross-entropy over labelled positions (labels >= 0), and their count.

  Args:
    logits: (..., V) float.
    labels: (...) int, -1 where there is no loss.
  Returns:
    (mean loss, number of labelled positions); the mean is 0 when nothing is labelled.
  """
  valid = labels >= 0
  per_token = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), jnp.maximum(labels, 0)
  )
  count = jnp.sum(valid)
  return jnp.sum(jnp.where(valid, per_token, 0.0)) / jnp.maximum(count, 1), count


def masked_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of labelled positions (labels >= 0) whose argmax is the label."""
  valid = labels >= 0
  hits = jnp.sum(jnp.where(valid, jnp.argmax(logits, axis=-1) == labels, False))
  return hits / jnp.maximum(jnp.sum(valid), 1)


def mse(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """Mean squared error over all elements, accumulated in (at least) float32."""
  dtype = jnp.promote_types(jnp.promote_types(prediction.dtype, target.dtype), jnp.float32)
  return jnp.mean(jnp.square(prediction.astype(dtype) - target.astype(dtype)))


def uniformity(units: jax.Array) -> jax.Array:
  """Wang & Isola's uniformity loss: log mean_{a != b} exp(-2 ||u_a - u_b||^2).

  Args:
    units: (N, d) unit vectors, N >= 2.
  """
  n = units.shape[0]
  sq_dist = jnp.maximum(2.0 - 2.0 * units @ units.T, 0.0)
  off_diagonal = ~jnp.eye(n, dtype=bool)
  return jax.nn.logsumexp(jnp.where(off_diagonal, -2.0 * sq_dist, -jnp.inf)) - jnp.log(
    n * (n - 1.0)
  )
