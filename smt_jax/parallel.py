"""Devices: the mesh, the shardings of the training state and batches, multi-host start-up.

The mesh has two axes, ("data", "fsdp") = (mesh.data, mesh.fsdp). Batches are split by rows over
both axes, so every device trains on distinct sequences. Parameters and optimizer moments are
replicated when mesh.fsdp == 1; otherwise every matrix (ndim >= 2) is split along its largest
axis divisible by mesh.fsdp (FSDP / ZeRO-3 style: XLA gathers it where it is used), and vectors
stay replicated. Shardings are a function of shapes only, so a parameter and its Adam moments
always share one.

Several processes (hosts) run the same program on one global mesh: `initialize_distributed`
joins them, each samples its own rows of the batch, and `global_batch` assembles the global
array from them with `jax.make_array_from_process_local_data`.
"""

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXES = ("data", "fsdp")
ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


class DistributedError(ValueError):
  """Multi-host flags or environment variables that do not describe a run."""


def initialize_distributed(
  coordinator_address: str = "",
  num_processes: int = 0,
  process_id: int = -1,
  auto_detect: bool = False,
) -> bool:
  """Joins this process to a multi-host run via `jax.distributed.initialize`; True if it did.

  Unset arguments ("", 0, -1) fall back to the environment variables JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES and JAX_PROCESS_ID. Without a coordinator address and without `auto_detect`
  this is a single-host run and nothing happens. With `auto_detect`, JAX fills in what is still
  missing from the cluster (Slurm, Open MPI, Cloud TPU, Kubernetes). Must run before anything
  asks JAX for its devices.
  """
  env = os.environ
  coordinator_address = coordinator_address or env.get(ENV[0], "")
  num_processes = num_processes or int(env.get(ENV[1], 0))
  process_id = process_id if process_id >= 0 else int(env.get(ENV[2], -1))
  if not (coordinator_address or auto_detect):
    if num_processes > 1 or process_id >= 0:
      raise DistributedError(
        f"num_processes={num_processes} / process_id={process_id} were given "
        "without a coordinator address; pass --coordinator_address=HOST:PORT "
        f"(or set {ENV[0]}), or --distributed to detect the cluster."
      )
    return False
  jax.distributed.initialize(
    coordinator_address or None, num_processes or None, None if process_id < 0 else process_id
  )
  return True


def mesh_shape(data: int, fsdp: int, device_count: int) -> tuple[int, int]:
  """(data, fsdp) axis sizes, data = -1 resolved to device_count // fsdp.

  Raises ValueError naming the mesh fields unless data * fsdp divides device_count.
  """
  if fsdp < 1 or (data != -1 and data < 1) or device_count % fsdp:
    raise ValueError(
      f"mesh.data={data} and mesh.fsdp={fsdp} must be >= 1 (mesh.data may be -1 = "
      f"all devices) with mesh.fsdp dividing the {device_count} devices."
    )
  data = device_count // fsdp if data == -1 else data
  if device_count % (data * fsdp):
    raise ValueError(
      f"mesh.data * mesh.fsdp = {data} * {fsdp} must divide the {device_count} "
      "available devices (mesh.data=-1 takes all of them)."
    )
  return data, fsdp


def make_mesh(mesh_cfg, devices=None) -> Mesh:
  """The ("data", "fsdp") mesh of the config's mesh group over the first data * fsdp devices
  (default: all of jax.devices(), ordered by jax.make_mesh for fast collectives)."""
  devices = jax.devices() if devices is None else list(devices)
  shape = mesh_shape(mesh_cfg.data, mesh_cfg.fsdp, len(devices))
  return jax.make_mesh(
    shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices[: int(np.prod(shape))]
  )


def param_spec(shape: tuple[int, ...], fsdp: int) -> PartitionSpec:
  """Replicated, unless fsdp > 1 and `shape` is a matrix: then its largest axis divisible by
  fsdp (the first such if tied) is split over "fsdp"."""
  axes = [i for i, n in enumerate(shape) if n % fsdp == 0]
  if fsdp == 1 or len(shape) < 2 or not axes:
    return PartitionSpec()
  split = max(axes, key=lambda i: shape[i])
  return PartitionSpec(*("fsdp" if i == split else None for i in range(len(shape))))


def state_shardings(mesh: Mesh, tree):
  """NamedShardings for a tree of arrays or jax.ShapeDtypeStructs (params, optimizer state)."""
  return jax.tree.map(lambda a: NamedSharding(mesh, param_spec(a.shape, mesh.shape["fsdp"])), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows split over every device of the mesh, the other dimensions whole."""
  return NamedSharding(mesh, PartitionSpec(AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device (scalars, metrics, read statistics)."""
  return NamedSharding(mesh, PartitionSpec())


def abstract_with_shardings(tree, shardings):
  """jax.ShapeDtypeStructs of `tree`'s leaves carrying `shardings` (targets for a restore)."""
  return jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
  )


def put_global(tree, shardings):
  """Places a tree that every process holds whole (the same values everywhere) on `shardings`."""
  return jax.make_array_from_process_local_data(
    shardings, tree, jax.tree.map(lambda a: tuple(a.shape), tree)
  )


def global_batch(local_batch: dict, mesh: Mesh, global_size: int) -> dict:
  """The global batch of `global_size` rows, split over the mesh, from this process's rows.

  `local_batch` holds this process's global_size / process_count rows (the rows of its
  devices, in order), or all global_size rows when every process holds the same batch.
  """
  if global_size % jax.process_count():
    raise ValueError(
      f"a batch of {global_size} rows cannot be split evenly over {jax.process_count()} processes."
    )
  shapes = jax.tree.map(lambda a: (global_size, *a.shape[1:]), local_batch)
  if jax.process_count() == 1:
    shapes = None  # make_array_from_process_local_data accepts only the local shape here.
  return jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch, shapes)


def to_host(tree, mesh: Mesh):
  """Numpy copies of the whole values of a tree of (possibly sharded) arrays on `mesh`; with
  several processes, every one must call it (the shards are gathered)."""
  return jax.device_get(jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree))
