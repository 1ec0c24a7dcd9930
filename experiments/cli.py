"""Command-line plumbing of experiments/run.py and evaluate.py: every bad input is one line
("error: ...") on stderr and exit status 1, never a traceback.

`main(argv, doc, define, body)` parses `argv` with flags that `define(flag_values, argv)` puts on
a fresh `absl.flags.FlagValues` (so a test can call it in-process, many times), checks the
config file and every `--config.FIELD` override first (a missing, broken or get_config-less file,
or an unknown field, named with the nearest valid one), then runs `body(flag_values)`.
Library INFO logs (orbax logs every save) are off unless --verbosity asks for them. SIGINT and
SIGTERM end the process with one line and status 130 / 143.
"""

import difflib
import importlib.util
import os
import re
import signal
import sys

import ml_collections
from absl import flags, logging

from smt_jax import parallel
from smt_jax.data import knobs, parse_knob
from smt_jax.errors import ConfigError
from smt_jax.train import Interrupted, NonFiniteLossError

ERROR = 1
_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")
_HELP = ("-h", "--help", "--helpshort", "--helpfull", "-?")


class _Terminated(KeyboardInterrupt):
  """SIGTERM outside the training loop (which stops cleanly by itself)."""


def one_line(e: BaseException) -> str:
  """An exception's message on one line (its type's name if the message is empty)."""
  return " ".join(str(e).split()) or type(e).__name__


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """The get_config() result of `--config=FILE[:ARG]`; ConfigError says what is wrong."""
  path, _, arg = spec.partition(":")
  if not path:
    raise ConfigError("--config is empty; name a config file, e.g. experiments/configs/smoke.py.")
  where = f"--config={spec}"
  if not os.path.isfile(path):
    raise ConfigError(f"{where}: no such file (configs are in experiments/configs/).")
  spec_ = importlib.util.spec_from_file_location("_smt_jax_config", path)
  if spec_ is None:
    raise ConfigError(f"{where}: not a Python file.")
  module = importlib.util.module_from_spec(spec_)
  try:
    spec_.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f"{where}: syntax error at line {e.lineno}: {e.msg}.") from None
  except ConfigError:
    raise
  except Exception as e:
    raise ConfigError(f"{where}: the file fails to load ({type(e).__name__}: {one_line(e)}).")
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"{where}: the file defines no get_config() function.")
  try:
    cfg = module.get_config(*([arg] if arg else []))
  except ConfigError as e:
    raise ConfigError(f"{where}: {e}") from None
  except Exception as e:
    raise ConfigError(f"{where}: get_config() fails ({type(e).__name__}: {one_line(e)}).") from None
  if not isinstance(cfg, ml_collections.ConfigDict):
    raise ConfigError(f"{where}: get_config() returned {type(cfg).__name__}, not a ConfigDict.")
  return cfg


def fields(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Dotted names of every field of cfg (groups and leaves)."""
  out = []
  for key, value in cfg.items():
    out.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      out += fields(value, f"{prefix}{key}.")
  return out


def check_overrides(argv: list[str], cfg: ml_collections.ConfigDict) -> None:
  """ConfigError for the first --config.FIELD of argv that cfg does not have, naming the nearest
  field it does have."""
  known = fields(cfg)
  for arg in argv[1:]:
    match = _OVERRIDE.match(arg)
    if match and match.group(1) not in known:
      name = match.group(1)
      group = name.rpartition(".")[0]
      candidates = [f for f in known if f.rpartition(".")[0] == group] or known
      near = difflib.get_close_matches(name, candidates, n=1, cutoff=0.3)
      near = near or difflib.get_close_matches(name, known, n=1, cutoff=0.3)
      hint = f"; did you mean {near[0]}?" if near else ""
      raise ConfigError(
        f"--config.{name}: the config has no field {name}{hint} (every field is documented in "
        "smt_jax/config.py)."
      )


_KNOB = re.compile(r"^--?(no)?config\.data\.kwargs\.([^=]+)(=.*)?$", re.S)


def task_knobs(
  argv: list[str], cfg: ml_collections.ConfigDict
) -> tuple[list[str], ml_collections.ConfigDict]:
  """The task choice and knobs of a command line, applied to the data group of the config file's
  `cfg`: `--config.data.name=X` for a task other than the file's resets data.kwargs to X's
  defaults (data.vocab_size stays the file's); `--config.data.kwargs.KNOB=V` sets any knob of
  the chosen task, the file's or not (a bool knob also as `--config.data.kwargs.KNOB` /
  `--noconfig.data.kwargs.KNOB`). Returns argv without the knob arguments (the config flag
  accepts only fields the file sets) and the resulting data.kwargs, to set once the flags are
  parsed. ConfigError for an unknown task, a knob the task lacks (naming its knobs) or a value
  of the wrong type."""
  name = _flag_value(argv, "config.data.name") or cfg.data.name
  try:
    kwargs = cfg.data.kwargs.to_dict() if name == cfg.data.name else knobs(name)
    rest, i = [argv[0]], 1
    while i < len(argv):
      match = _KNOB.match(argv[i])
      if not match:
        rest.append(argv[i])
        i += 1
        continue
      negated, field, text = match.groups()
      is_bool = isinstance(knobs(name).get(field), bool)
      if text is None and not is_bool and not negated and i + 1 < len(argv):
        i, text = i + 1, "=" + argv[i + 1]  # --config.data.kwargs.KNOB V
      value = "false" if negated else (text or "=true")[1:]
      kwargs[field] = parse_knob(name, field, value)
      i += 1
  except ValueError as e:
    raise ConfigError(f"--config.{one_line(e)}") from None
  return rest, ml_collections.ConfigDict(kwargs)


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of --NAME=V or --NAME V in argv (the last one), None if absent."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


_QUIET = False  # Whether _quiet_hooks is installed (once per process).


def _is_closed_loop_noise(exc_type, exc) -> bool:
  """Orbax's reads of an unreadable checkpoint leave TensorStore callbacks that fire after its
  event loop closed; each would print a traceback ("Event loop is closed") although the error was
  handled (the checkpoint is skipped)."""
  return exc_type is RuntimeError and "Event loop is closed" in str(exc)


def _quiet_hooks():
  """Wraps sys.excepthook, sys.unraisablehook and threading.excepthook to drop that noise."""
  import threading

  excepthook, unraisablehook, thread_hook = sys.excepthook, sys.unraisablehook, threading.excepthook

  def on_exception(exc_type, exc, tb):
    if not _is_closed_loop_noise(exc_type, exc):
      excepthook(exc_type, exc, tb)

  def on_unraisable(info):
    if not _is_closed_loop_noise(info.exc_type, info.exc_value):
      unraisablehook(info)

  def on_thread(args):
    if not _is_closed_loop_noise(args.exc_type, args.exc_value):
      thread_hook(args)

  sys.excepthook, sys.unraisablehook, threading.excepthook = on_exception, on_unraisable, on_thread


def _on_sigterm(signum, frame):
  del signum, frame
  raise _Terminated


def main(
  argv: list[str], doc: str, define, body, base_config=None, workdir_required: bool = True
) -> int:
  """Runs a command line; returns its exit status. `define(flag_values, argv)` defines the
  flags (a config file flag named "config" unless `base_config` is given: then --config.FIELD
  overrides that config); `body(flag_values)` does the work. With `workdir_required` False a
  missing --workdir is the body's to handle (it may take another source)."""
  fv = flags.FlagValues()
  flags.DEFINE_integer(
    "verbosity",
    None,
    "Library log level (absl): 0 = INFO, 1 = DEBUG, -1 = WARNING; default: warnings only.",
    flag_values=fv,
  )
  global _QUIET
  if not _QUIET:
    _quiet_hooks()
    _QUIET = True
  if any(arg in _HELP for arg in argv[1:]):
    define(fv, [argv[0]])
    print(doc.strip() + "\n\nFlags:\n" + fv.get_help())
    return 0
  previous = signal.getsignal(signal.SIGTERM)
  try:
    signal.signal(signal.SIGTERM, _on_sigterm)
  except ValueError:  # Not the main thread.
    previous = None
  try:
    try:
      spec = _flag_value(argv, "config")
      kwargs = None  # data.kwargs from the command line's task and knobs.
      if base_config is None and spec is not None:
        file_cfg = load_config_file(spec)
        argv, kwargs = task_knobs(argv, file_cfg)
        check_overrides(argv, file_cfg)
      elif base_config is not None:
        check_overrides(argv, base_config)
      define(fv, argv)  # A config flag parses its overrides as it is defined.
      rest = fv(argv)
      if kwargs is not None:
        fv["config"].value.data.kwargs = kwargs
    except ConfigError:
      raise
    except flags.Error as e:
      raise ConfigError(one_line(e)) from None
    except Exception as e:  # ml_collections raises many types for a bad override value.
      raise ConfigError(f"bad command line: {type(e).__name__}: {one_line(e)}") from None
    if len(rest) > 1:
      raise ConfigError(f"unexpected argument {rest[1]!r}; flags are --name=value.")
    if "config" in fv and base_config is None and fv["config"].value is None:
      raise ConfigError("--config is required (see --help).")
    if fv["workdir"].value is None and workdir_required:
      raise ConfigError("--workdir is required (see --help).")
    if fv["workdir"].value is not None and not fv["workdir"].value.strip():
      raise ConfigError("--workdir is empty; name the folder of the run (e.g. --workdir=DIR).")
    flags.FLAGS.mark_as_parsed()  # absl logging reads the global flags.
    verbosity = fv["verbosity"].value
    logging.set_verbosity(logging.WARNING if verbosity is None else verbosity)
    return body(fv) or 0
  except (ConfigError, NonFiniteLossError, parallel.DistributedError, FileNotFoundError) as e:
    print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
    return ERROR
  except Interrupted as e:
    print(str(e), file=sys.stderr, flush=True)
    return 128 + e.signum
  except KeyboardInterrupt as e:
    signum = signal.SIGTERM if isinstance(e, _Terminated) else signal.SIGINT
    print(f"\n{signal.Signals(signum).name}: stopped.", file=sys.stderr, flush=True)
    return 128 + signum
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
