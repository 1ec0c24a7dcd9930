"""Datasets: synthetic probe tasks (pure JAX) and real token streams (memory-mapped ``.npy``).

    ds = make_dataset(data_cfg, split="train")   # split in {"train", "test"}
    batch = ds.sample(key, batch_size, T)  # {"x": int32[B, T], "y": int32[B, T]}, y = -1: no loss
    ds.vocab_size, ds.jittable, ds.decode(tokens)

The memory after reading x[:, t] predicts y[:, t]. Synthetic task knobs are documented on the
classes in ``smt_jax.data.synthetic``; ``default_data_config(name)`` lists them with defaults.
Streams are prepared once with ``python -m smt_jax.data.prepare NAME``.
"""

from smt_jax.data.registry import (
  STREAM_NAMES,
  SYNTHETIC_NAMES,
  TASK_NAMES,
  default_data_config,
  knobs,
  make_dataset,
  parse_knob,
)

__all__ = [
  "STREAM_NAMES",
  "SYNTHETIC_NAMES",
  "TASK_NAMES",
  "default_data_config",
  "knobs",
  "make_dataset",
  "parse_knob",
]
