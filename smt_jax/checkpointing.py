"""Orbax checkpoints of a run: workdir/checkpoints/STEP/{params,opt_state}.

`Checkpointer` saves and restores the training state (every process of a multi-host run takes
part; arrays are restored onto the shardings of the target tree, so a checkpoint moves between
device counts); `restore_newest` restores the newest readable checkpoint, falling back over
damaged ones; `load_params(path)` gives evaluation code the latest readable parameters of a
workdir (or checkpoints folder) on this process's first device, without knowing the optimizer.

Orbax writes each checkpoint into a temp folder and renames it when complete, so an interrupted
save leaves no STEP folder: only complete checkpoints (or ones damaged afterwards) are listed.
"""

import contextlib
import dataclasses
import gc
import logging
import os
import pathlib
import shutil

import jax
import orbax.checkpoint as ocp

from smt_jax.errors import ConfigError

SUBDIR = "checkpoints"
DAMAGED = "checkpoints.damaged"  # Where a resume moves checkpoints it could not read.
ITEMS = ("params", "opt_state")


def checkpoint_dir(path: str | pathlib.Path) -> pathlib.Path | None:
  """The checkpoints folder of a workdir or checkpoints folder `path`, None if it holds none."""
  path = pathlib.Path(path).absolute()
  for candidate in (path / SUBDIR, path):
    if candidate.is_dir() and any(p.name.isdigit() for p in candidate.iterdir()):
      return candidate
  return None


def _reason(e: BaseException) -> str:
  """One line on why a checkpoint could not be read (orbax messages can be kilobytes)."""
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


@contextlib.contextmanager
def _quiet_unretrieved_reads():
  """Orbax reads a checkpoint's arrays in concurrent asyncio tasks: when a file is damaged, the
  restore raises the first error and asyncio logs the other tasks' errors ("Task exception was
  never retrieved", with a traceback) as they are collected. The caller reports the skip itself,
  so those records are dropped while reading and collecting; other asyncio records pass."""
  log = logging.getLogger("asyncio")
  quiet = lambda record: "exception was never retrieved" not in record.getMessage()
  log.addFilter(quiet)
  try:
    yield
  finally:
    gc.collect()
    log.removeFilter(quiet)


def _leaf_shapes(tree) -> dict[str, tuple]:
  """{"a/b/c": (shape, dtype)} of the array leaves of a pytree or orbax metadata tree."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
      key = lambda k: getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))
      name = "/".join(str(key(k)) for k in path)
      out[name] = (tuple(leaf.shape), str(leaf.dtype))
  return out


def shape_mismatches(stored, expected, limit: int = 4) -> list[str]:
  """Lines "path: checkpoint (16,), config (32,)" for the leaves of two trees that differ."""
  a, b = _leaf_shapes(stored), _leaf_shapes(expected)
  lines = []
  for name in sorted(a.keys() | b.keys()):
    if a.get(name) != b.get(name):
      fmt = lambda s: "absent" if s is None else f"{s[0]} {s[1]}"
      lines.append(f"{name}: checkpoint {fmt(a.get(name))}, config {fmt(b.get(name))}")
  return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


class ShapeMismatch(Exception):
  """The checkpoint is readable but holds parameters of another model; lines name the leaves."""

  def __init__(self, step: int, lines: list[str]):
    super().__init__(f"checkpoint {step}: " + "; ".join(lines))
    self.step, self.lines = step, lines


@dataclasses.dataclass
class Restored:
  step: int
  params: dict
  opt_state: object
  skipped: list[tuple[int, str]]  # (step, reason) of newer checkpoints that could not be read


def sync_processes(tag: str) -> None:
  """Waits until every process reaches this call (a no-op with one process): for file changes
  that process 0 makes and the others then read."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(tag)


class Checkpointer:
  """A CheckpointManager over {"params", "opt_state"} items, keeping the last `keep` steps.

  In a multi-process job, Checkpointers that save at the same time (a run's checkpoints/ and its
  best/) must differ in directory name: orbax names its cross-process barriers by step alone, so
  two managers saving one step would share a barrier, and a process whose write finishes late
  deadlocks the others. The directory name prefixes every barrier of this manager.
  """

  def __init__(self, directory: str | pathlib.Path, keep: int = 3):
    self.directory = pathlib.Path(directory).absolute()
    self.keep = keep
    self._open()

  def _open(self) -> None:
    options = ocp.CheckpointManagerOptions(
      max_to_keep=self.keep,
      create=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
        barrier_sync_key_prefix=self.directory.name
      ),
    )
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers={item: ocp.StandardCheckpointHandler() for item in ITEMS},
    )

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, params, opt_state) -> None:
    """Saves (asynchronously, atomically) unless `step` is already saved."""
    if step in self.manager.all_steps():
      return
    self.manager.save(
      step,
      args=ocp.args.Composite(
        params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state)
      ),
    )

  def check_shapes(self, step: int, params, opt_state) -> None:
    """Raises ShapeMismatch if `step`'s stored trees differ from the abstract ones given; any
    other exception means the checkpoint's metadata cannot be read."""
    metadata = self.manager.item_metadata(step)
    trees = [getattr(metadata[item], "tree", metadata[item]) for item in ITEMS]
    lines = shape_mismatches(trees[0], params)
    if not lines:
      stored = sorted(_leaf_shapes(trees[1]).values())
      if stored != sorted(_leaf_shapes(opt_state).values()):
        lines = ["the optimizer state has another structure (trainable groups or optimizer)"]
    if lines:
      raise ShapeMismatch(step, lines)

  def restore(self, step: int, params, opt_state):
    """(params, opt_state) of `step`, structured like the given abstract trees
    (jax.ShapeDtypeStruct leaves, e.g. from jax.eval_shape) and placed on their shardings."""
    restored = self.manager.restore(
      step,
      args=ocp.args.Composite(
        params=ocp.args.StandardRestore(params), opt_state=ocp.args.StandardRestore(opt_state)
      ),
    )
    return restored["params"], restored["opt_state"]

  def restore_newest(self, params, opt_state) -> Restored | None:
    """The newest checkpoint that restores onto the abstract trees, None if there is none.

    A checkpoint that cannot be read is skipped (Restored.skipped says which and why) and the
    next older one is tried. Raises ShapeMismatch at the first readable checkpoint of another
    model (older ones are of the same run), ConfigError when checkpoints exist but none can be
    read.
    """
    skipped = []
    for step in reversed(self.all_steps()):
      try:
        with _quiet_unretrieved_reads():
          self.check_shapes(step, params, opt_state)
          restored = self.restore(step, params, opt_state)
      except ShapeMismatch:
        raise
      except Exception as e:  # Orbax raises many types for missing or truncated files.
        skipped.append((step, _reason(e)))
        continue
      return Restored(step, *restored, skipped)
    if skipped:
      raise ConfigError(
        f"{self.directory}: no checkpoint can be read ("
        + "; ".join(f"step {s}: {r}" for s, r in skipped)
        + f"). Move {self.directory} away to start over, or use a new --workdir."
      )
    return None

  def set_aside(self, steps, workdir: str | pathlib.Path) -> pathlib.Path:
    """Moves the checkpoints of `steps` to workdir/checkpoints.damaged/STEP (kept for
    inspection, out of the manager's way) and reopens the manager; returns that folder."""
    target = pathlib.Path(workdir) / DAMAGED
    if jax.process_index() == 0:
      target.mkdir(exist_ok=True)
      for step in steps:
        dest = target / str(step)
        if dest.exists():
          shutil.rmtree(dest)
        shutil.move(str(self.directory / str(step)), dest)
    sync_processes("smt_jax.checkpointing.set_aside")
    self.manager.close()
    self._open()
    return target

  def wait(self) -> None:
    """Waits until pending (asynchronous) saves are complete."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager (again: a no-op)."""
    if self.manager is None:
      return
    manager, self.manager = self.manager, None
    manager.wait_until_finished()
    manager.close()


def load_params(path: str | pathlib.Path, step: int | None = None, on_skip=None):
  """(params, step) of the latest readable (or the given) checkpoint under a workdir or
  checkpoints folder. Without `step`, an unreadable checkpoint is skipped for the next older one
  (`on_skip(step, reason)` is told).

  Raises ConfigError naming `path` when it holds no readable checkpoint.
  """
  directory = checkpoint_dir(path)
  if directory is None:
    raise ConfigError(
      f"{path}: no checkpoint found (expected {pathlib.Path(path) / SUBDIR}/STEP): it is not the "
      "workdir of a run that has saved one."
    )
  manager = ocp.CheckpointManager(
    directory, item_handlers={item: ocp.StandardCheckpointHandler() for item in ITEMS}
  )
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  failures = []
  try:
    steps = sorted(manager.all_steps(), reverse=True) if step is None else [step]
    for s in steps:
      try:
        with _quiet_unretrieved_reads():
          target = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
            manager.item_metadata(s)["params"].tree,
          )
          restored = manager.restore(
            s, args=ocp.args.Composite(params=ocp.args.StandardRestore(target))
          )
        return restored["params"], s
      except Exception as e:  # Orbax raises many types for missing or truncated files.
        failures.append((s, _reason(e)))
        if on_skip is not None and step is None:
          on_skip(s, _reason(e))
  finally:
    manager.close()
  raise ConfigError(
    f"{directory}: no checkpoint can be read ("
    + "; ".join(f"step {s}: {r}" for s, r in failures)
    + "); point at a workdir with a complete checkpoint."
  )


def write_atomic(path: str | pathlib.Path, text: str) -> None:
  """Writes `text` to `path` through a temp file and a rename (atomic on POSIX filesystems)."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  with tmp.open("w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
