"""Orbax checkpoints of a run: workdir/checkpoints/STEP/{params,opt_state}.

`Checkpointer` saves and restores the training state (every process of a multi-host run takes
part; arrays are restored onto the shardings of the target tree, so a checkpoint moves between
device counts); `load_params(path)` gives evaluation code the latest parameters of a workdir (or
checkpoints folder) on this process's first device, without knowing the optimizer.
"""

import pathlib

import jax
import orbax.checkpoint as ocp

from smt_jax.errors import ConfigError

SUBDIR = "checkpoints"


def checkpoint_dir(path: str | pathlib.Path) -> pathlib.Path | None:
  """The checkpoints folder of a workdir or checkpoints folder `path`, None if it holds none."""
  path = pathlib.Path(path).absolute()
  for candidate in (path / SUBDIR, path):
    if candidate.is_dir() and any(p.name.isdigit() for p in candidate.iterdir()):
      return candidate
  return None


class Checkpointer:
  """A CheckpointManager over {"params", "opt_state"} items, keeping the last `keep` steps."""

  def __init__(self, directory: str | pathlib.Path, keep: int = 3):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)

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

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self.manager.wait_until_finished()
    self.manager.close()


def load_params(path: str | pathlib.Path, step: int | None = None):
  """(params, step) of the latest (or given) checkpoint under a workdir or checkpoints folder.

  Raises ConfigError naming `path` when it holds no readable checkpoint.
  """
  directory = checkpoint_dir(path)
  if directory is None:
    raise ConfigError(
      f"{path}: no checkpoint found (expected {pathlib.Path(path) / SUBDIR}/STEP); "
      "point ckpt.init_from at the workdir of a finished run."
    )
  manager = ocp.CheckpointManager(
    directory,
    item_handlers={item: ocp.StandardCheckpointHandler() for item in ("params", "opt_state")},
  )
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  try:
    step = manager.latest_step() if step is None else step
    target = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
      manager.item_metadata(step)["params"].tree,
    )
    restored = manager.restore(
      step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target))
    )
  except Exception as e:  # Orbax raises many types for missing or truncated files.
    raise ConfigError(
      f"{directory}: checkpoint {step} cannot be read ({type(e).__name__}: "
      f"{e}); point ckpt.init_from at a complete checkpoint."
    ) from e
  finally:
    manager.close()
  return restored["params"], step
