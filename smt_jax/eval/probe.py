"""Linear probes of memories: how much of a task's hidden state a fitted linear read recovers.

A probe is a ridge regression from a memory (standardised with the fitting set's statistics, plus
a bias) onto the one-hot of a label, read by its argmax. Its penalty is chosen on a separate
set of sequences and it is scored on a third, so the score is a held-out lower bound on what the
memory holds: a nonlinear reader (the model's own decoder) may read more.
"""

import numpy as np

PENALTIES = (1e-6, 1e-4, 1e-2, 1.0)  # Ridge penalties tried, per memory in the fitting set.


def ridge_fit(features: np.ndarray, labels: np.ndarray, num_classes: int, penalty: float):
  """Weights (Z + 1, C) of the ridge regression of one_hot(labels) (N,) on [features, 1] (N, Z);
  the bias is not penalised."""
  x = np.concatenate([features, np.ones((len(features), 1))], axis=1).astype(np.float64)
  gram = x.T @ x + penalty * len(x) * np.diag([1.0] * features.shape[1] + [0.0])
  return np.linalg.solve(gram, x.T @ np.eye(num_classes)[labels])


def ridge_predict(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
  """(N,) argmax classes of the fitted read of features (N, Z)."""
  return np.argmax(np.concatenate([features, np.ones((len(features), 1))], axis=1) @ weights, 1)


def ridge_probe(fit, choose, score, num_classes: int, penalties=PENALTIES):
  """(hits on `score` (N,) bool, the penalty chosen): a probe fitted on `fit`, its penalty the one
  of `penalties` with the most hits on `choose`; each set a (features (N, Z), labels (N,)) pair."""
  mean, std = fit[0].mean(0), fit[0].std(0) + 1e-6
  fit_x, choose_x, score_x = ((f - mean) / std for f in (fit[0], choose[0], score[0]))
  best = None
  for penalty in penalties:
    weights = ridge_fit(fit_x, fit[1], num_classes, penalty)
    hits = np.mean(ridge_predict(weights, choose_x) == choose[1])
    if best is None or hits > best[0]:
      best = (hits, penalty, weights)
  return ridge_predict(best[2], score_x) == score[1], best[1]
