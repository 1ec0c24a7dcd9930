"""The linear state probe (smt_jax.eval.probe) against least squares and on data whose answer it
can and cannot read."""

import numpy as np

from smt_jax.eval.probe import PENALTIES, ridge_fit, ridge_probe


def sets(rng, features_of, num_classes=5, sizes=(600, 300, 600)):
  """(features, labels) sets of random labels and features_of(labels)."""
  out = []
  for n in sizes:
    labels = rng.integers(0, num_classes, n)
    out.append((features_of(labels), labels))
  return out


def test_ridge_fit_without_penalty_is_least_squares_with_a_bias():
  rng = np.random.default_rng(0)
  x, labels = rng.normal(size=(200, 6)), rng.integers(0, 3, 200)
  design = np.concatenate([x, np.ones((200, 1))], axis=1)
  expected = np.linalg.lstsq(design, np.eye(3)[labels], rcond=None)[0]
  np.testing.assert_allclose(ridge_fit(x, labels, 3, 0.0), expected, atol=1e-8)
  # The penalty shrinks the weights but not the bias: a huge one leaves the class frequencies.
  shrunk = ridge_fit(x, labels, 3, 1e9)
  assert np.abs(shrunk[:-1]).max() < 1e-6
  np.testing.assert_allclose(shrunk[-1], np.bincount(labels, minlength=3) / 200, atol=1e-6)


def test_probe_reads_a_linearly_held_label_and_not_noise():
  rng = np.random.default_rng(1)
  code = rng.normal(size=(5, 32))  # Each class a direction in 32 dimensions, plus noise.
  held = sets(rng, lambda y: code[y] + 0.3 * rng.normal(size=(len(y), 32)))
  hits, penalty = ridge_probe(*held, num_classes=5)
  assert hits.shape == (600,) and hits.mean() == 1.0 and penalty in PENALTIES
  noise = sets(rng, lambda y: rng.normal(size=(len(y), 32)))
  hits, _ = ridge_probe(*noise, num_classes=5)
  assert abs(hits.mean() - 0.2) < 0.06  # Chance, 1/5 (binomial sd of 600 draws: 0.016).


def test_probe_chooses_the_penalty_on_its_own_set():
  """With 40 samples in 200 noisy dimensions, the unpenalised fit interpolates the fitting set
  and reads the held-out sets worse than a penalised one: the choice falls on a penalty."""
  rng = np.random.default_rng(2)
  code = rng.normal(size=(5, 200))
  fit, choose, score = sets(
    rng, lambda y: 0.3 * code[y] + rng.normal(size=(len(y), 200)), sizes=(40, 300, 600)
  )
  hits, penalty = ridge_probe(fit, choose, score, num_classes=5, penalties=(0.0, 1.0))
  assert penalty == 1.0
  unpenalised, _ = ridge_probe(fit, choose, score, num_classes=5, penalties=(0.0,))
  assert hits.mean() > unpenalised.mean()
