"""Training: optimizer, pure step functions, the resumable loop, checkpoints and pipelines.

from smt_jax.train import train_and_evaluate
final_metrics = train_and_evaluate(config, workdir)
"""

from smt_jax.checkpointing import load_params
from smt_jax.train.loop import Interrupted, NonFiniteLossError, train_and_evaluate

__all__ = ["train_and_evaluate", "load_params", "NonFiniteLossError", "Interrupted"]
