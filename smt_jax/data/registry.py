"""``make_dataset(data_cfg, split)``: one entry point for synthetic tasks and token streams.

``data_cfg`` fields: ``name`` (one of TASK_NAMES), ``vocab_size`` (a knob for synthetic tasks;
that of the prepared stream's meta.json for the shipped streams: 256, or the grey levels of a
quantised pixel stream; for ``tokens``, a user's own ids, that of its meta.json or above its
largest id), ``path`` (prepared stream directory; '' = ``workdirs/data/NAME``;
unused by synthetic tasks) and ``kwargs`` (task knobs, documented on each task class in
``smt_jax.data.synthetic``; missing knobs take their defaults, streams take none).
``default_data_config(name)`` returns a complete config with every knob at its default.
"""

import dataclasses

import ml_collections
import numpy as np

from smt_jax.data.sources import SOURCES
from smt_jax.data.streams import (
  TOKENS,
  TokenStream,
  open_stream,
  open_tokens,
  prepare_command,
  stream_dir,
)
from smt_jax.data.synthetic import TASKS, SyntheticTask
from smt_jax.data.tokenizers import VOCAB_SIZE, PixelTokenizer

SYNTHETIC_NAMES = tuple(TASKS)
STREAM_NAMES = tuple(SOURCES)
TASK_NAMES = SYNTHETIC_NAMES + STREAM_NAMES + (TOKENS,)  # every valid data.name
# Every split draws disjoint sequences: train (what the trainer fits), val (the in-training
# evaluation, which guides choices of lr and steps) and test (the final evaluation alone).
SPLITS = ("train", "test", "val")


def knobs(name: str) -> dict:
  """Default ``data.kwargs`` of a synthetic task (empty for streams)."""
  if name in STREAM_NAMES or name == TOKENS:
    return {}
  fields = dataclasses.fields(_task_class(name))
  return {f.name: f.default for f in fields if f.name not in ("vocab_size", "split_salt")}


def parse_knob(name: str, field: str, text: str):
  """The value of knob ``field`` of task ``name`` written as ``text`` (as on a command line:
  "True"/"false"/"1" for a bool, "8" for an int, "0.2" for a float), typed like its default.

  ValueError names the task's knobs when ``field`` is not one, and the expected type when
  ``text`` does not parse."""
  defaults = knobs(name)
  if field not in defaults:
    raise ValueError(
      f"data.kwargs.{field} is not a knob of task {name!r}. The knobs of {name!r}: "
      f"{', '.join(sorted(defaults)) or 'none'}"
    )
  kind = type(defaults[field])
  word = text.strip().lower()
  try:
    if kind is bool:
      return {"true": True, "1": True, "false": False, "0": False}[word]
    return kind(word)
  except (KeyError, ValueError):
    raise ValueError(
      f"data.kwargs.{field}={text!r}: expected {kind.__name__} (task {name!r})"
    ) from None


def default_data_config(name: str) -> ml_collections.ConfigDict:
  """A complete ``data`` config for ``name`` with default vocabulary and knobs."""
  vocab = VOCAB_SIZE if name in STREAM_NAMES or name == TOKENS else _task_class(name).default_vocab
  return ml_collections.ConfigDict(
    {
      "name": name,
      "vocab_size": vocab,
      "path": "",
      "kwargs": ml_collections.ConfigDict(knobs(name)),
    }
  )


def make_dataset(data_cfg, split: str = "train") -> SyntheticTask | TokenStream:
  """The dataset named by ``data_cfg.name`` for ``split`` (one of SPLITS).

  Synthetic tasks draw fresh sequences for every split (each split but train folds its own
  constant, its index in SPLITS, into the key, so one key never yields the same batch for two
  splits); streams read train.npy for train and disjoint halves of the held-out file for val
  (the first half) and test (the second; `streams.held_out_part`).
  """
  if split not in SPLITS:
    raise ValueError(f"split={split!r}: must be one of {SPLITS}")
  name = data_cfg.name
  kwargs = dict(data_cfg.get("kwargs") or {})
  if name == TOKENS:
    if kwargs:
      raise ValueError(
        f"data.kwargs.{next(iter(kwargs))}: the 'tokens' dataset takes no knobs; put \"dtype\" "
        'and "vocab_size" in data.path\'s meta.json'
      )
    return open_tokens(data_cfg.get("path", ""), split, data_cfg.vocab_size)
  if name in STREAM_NAMES:
    if kwargs:
      raise ValueError(
        f"data.kwargs.{next(iter(kwargs))}: the {name!r} stream takes no knobs; "
        "leave data.kwargs empty"
      )
    stream = open_stream(name, data_cfg.get("path", ""), split)
    if data_cfg.vocab_size != stream.vocab_size:
      directory = stream_dir(name, data_cfg.get("path", ""))
      levels = data_cfg.vocab_size
      regrey = (  # --size keeps the stream's resolution.
        f", or prepare it at {levels} grey levels: `"
        f"{prepare_command(name, directory, stream.tokenizer.height, levels, force=True)}`"
        if isinstance(stream.tokenizer, PixelTokenizer)
        else ""
      )
      raise ValueError(
        f"data.vocab_size={data_cfg.vocab_size!r}: the {name!r} stream in {directory} has "
        f"{stream.vocab_size} token values; set data.vocab_size to {stream.vocab_size}{regrey}"
      )
    return stream
  cls = _task_class(name)
  defaults = knobs(name)
  for field, value in kwargs.items():
    if field not in defaults:
      raise ValueError(
        f"data.kwargs.{field} is not a knob of task {name!r}; its knobs: {sorted(defaults)}"
      )
    kwargs[field] = _coerce(field, value, type(defaults[field]))
  return cls(data_cfg.vocab_size, **kwargs, split_salt=SPLITS.index(split))


def _task_class(name: str) -> type[SyntheticTask]:
  if name not in TASKS:
    raise ValueError(f"data.name={name!r} is unknown; valid names: {', '.join(TASK_NAMES)}")
  return TASKS[name]


def _coerce(field: str, value, kind: type):
  """``value`` as ``kind`` (bool, int or float; an int is a valid float), else ValueError."""
  is_bool = isinstance(value, (bool, np.bool_))
  ok = {
    bool: is_bool,
    int: isinstance(value, (int, np.integer)) and not is_bool,
    float: isinstance(value, (int, float, np.integer, np.floating)) and not is_bool,
  }[kind]
  if not ok:
    raise ValueError(f"data.kwargs.{field}={value!r}: expected {kind.__name__}")
  return kind(value)
