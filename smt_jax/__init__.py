"""smt_jax: train nonlinear RNNs without backpropagation through time (SMT, DMT) in JAX/Flax."""

__version__ = "0.1.0"
