"""What keeps a workdir intact: a lock, atomic writes, deferred interrupts and status lines.

- `WorkdirLock`: `DIR/.lock` holds {"pid", "host", "started"}; a second run on a locked workdir
  raises ConfigError naming the holder; a lock left by a dead process on this host is taken over
  (with a message); the lock is released on exit.
- `write_atomic`: a temp file in the same folder, then a rename, so a reader (or a kill) never
  sees a half-written config.json or metrics.jsonl.
- `deferred_interrupts`: SIGINT and SIGTERM set a flag instead of raising, so that the loop stops
  between steps and a checkpoint being written is completed; a second signal exits at once.
- `say`: one status line on stderr (process 0 only).
"""

import contextlib
import json
import os
import pathlib
import signal
import socket
import sys
import threading
import time

import jax

from smt_jax.checkpointing import write_atomic  # noqa: F401 (the workdir's atomic writes)
from smt_jax.errors import ConfigError

LOCK = ".lock"


def say(message: str) -> None:
  """A status line on stderr from process 0 of a run."""
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


def prepare_workdir(workdir: str | pathlib.Path) -> pathlib.Path:
  """`workdir` as a Path, created if needed; ConfigError if it is empty or not a folder."""
  if not str(workdir).strip():
    raise ConfigError("--workdir is empty; name the folder of the run (e.g. --workdir=DIR).")
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ConfigError(f"--workdir={workdir} is a file, not a folder; choose another path.")
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"--workdir={workdir} cannot be created ({e.strerror}).") from None
  return workdir


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # It exists, run by someone else.
    return True
  return True


class WorkdirLock:
  """An exclusive lock on a workdir (`DIR/.lock`); use as a context manager."""

  def __init__(self, workdir: str | pathlib.Path):
    self.path = pathlib.Path(workdir) / LOCK
    self.held = False

  def acquire(self) -> None:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    tmp = self.path.with_name(f"{LOCK}.{me['pid']}")
    tmp.write_text(json.dumps(me) + "\n")
    try:
      for _ in range(3):
        try:
          os.link(tmp, self.path)  # Atomic: fails if the lock exists; the content is complete.
          self.held = True
          return
        except FileExistsError:
          self._take_over_if_stale()
      raise ConfigError(f"{self.path}: could not take the lock; retry.")
    finally:
      tmp.unlink(missing_ok=True)

  def _take_over_if_stale(self) -> None:
    """Removes a lock whose process is gone; ConfigError naming the holder otherwise."""
    try:
      holder = json.loads(self.path.read_text())
      pid, host = int(holder["pid"]), str(holder["host"])
    except FileNotFoundError:
      return  # Released meanwhile.
    except (OSError, ValueError, KeyError, TypeError):
      say(f"{self.path}: unreadable lock file; taking it over.")
      self.path.unlink(missing_ok=True)
      return
    started = holder.get("started")
    since = (
      time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(float(started))) if started else ""
    )
    if host == socket.gethostname() and not _alive(pid):
      say(f"{self.path}: taking over a stale lock of process {pid} on {host} (no longer running).")
      self.path.unlink(missing_ok=True)
      return
    where = "" if host == socket.gethostname() else f" (if it is gone, delete {self.path})"
    raise ConfigError(
      f"{self.path.parent} is in use by process {pid} on {host}{since}{where}; wait for "
      "it to finish, or use another --workdir."
    )

  def release(self) -> None:
    if not self.held:
      return
    self.held = False
    with contextlib.suppress(OSError, ValueError):
      if json.loads(self.path.read_text()).get("pid") == os.getpid():
        self.path.unlink()

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


class StopRequest:
  """Set by the first SIGINT/SIGTERM inside `deferred_interrupts`; the loop polls it."""

  def __init__(self):
    self.signum: int | None = None

  def __bool__(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ""


@contextlib.contextmanager
def deferred_interrupts(on_force_exit=lambda: None):
  """Within the block, SIGINT and SIGTERM set the yielded StopRequest instead of raising; a second
  signal calls `on_force_exit()` and exits the process at once with 128 + signum (an unfinished
  checkpoint save is then discarded: orbax writes into a temp folder and renames when done).
  Outside the main thread this does nothing."""
  stop = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return

  def handler(signum, frame):
    del frame
    if stop:
      print(f"\n{signal.Signals(signum).name} again: exiting now.", file=sys.stderr, flush=True)
      with contextlib.suppress(Exception):
        on_force_exit()
      os._exit(128 + signum)
    stop.signum = signum
    print(
      f"\n{stop.name}: stopping after the current step (a checkpoint being written is "
      "completed); send it again to quit at once.",
      file=sys.stderr,
      flush=True,
    )

  previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield stop
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
