"""smt_jax.parallel on this process's devices: mesh shapes, parameter specs, multi-host start-up
guards and batch placement. Several devices and processes: tests/test_parallel_devices.py."""

import jax
import ml_collections
import numpy as np
import pytest
from conftest import make_tiny_config
from jax.sharding import PartitionSpec as P

from smt_jax import parallel
from smt_jax.errors import ConfigError
from smt_jax.train.validate import validate


@pytest.mark.parametrize(
  "shape,fsdp,spec",
  [
    ((64, 256), 1, P()),  # No FSDP axis: replicated.
    ((256,), 4, P()),  # Vectors (biases, norm scales) stay whole.
    ((64, 256), 4, P(None, "fsdp")),  # The largest axis.
    ((64, 6), 4, P("fsdp", None)),  # The largest axis that divides.
    ((6, 10), 4, P()),  # None divides.
    ((2, 8, 8), 2, P(None, "fsdp", None)),  # Ties: the first.
  ],
)
def test_param_spec_splits_the_largest_divisible_axis_of_matrices(shape, fsdp, spec):
  assert parallel.param_spec(shape, fsdp) == spec


@pytest.mark.parametrize(
  "data,fsdp,devices,shape",
  [(-1, 1, 8, (8, 1)), (-1, 2, 8, (4, 2)), (2, 2, 8, (2, 2)), (1, 1, 8, (1, 1))],
)
def test_mesh_shape_resolves_all_devices(data, fsdp, devices, shape):
  assert parallel.mesh_shape(data, fsdp, devices) == shape


@pytest.mark.parametrize(
  "data,fsdp,devices,message",
  [
    (-1, 3, 8, "mesh.fsdp dividing the 8 devices"),
    (0, 1, 8, "must be >= 1"),
    (3, 1, 8, "mesh.data \\* mesh.fsdp = 3 \\* 1 must divide the 8"),
    (4, 4, 8, "mesh.data \\* mesh.fsdp = 4 \\* 4 must divide the 8"),
  ],
)
def test_mesh_shape_names_the_fields_when_the_devices_do_not_fit(data, fsdp, devices, message):
  with pytest.raises(ValueError, match=message):
    parallel.mesh_shape(data, fsdp, devices)


def test_validate_rejects_a_mesh_larger_than_the_devices():
  cfg = make_tiny_config(**{"data.name": "retrieval", "mesh.fsdp": 2 * jax.device_count()})
  with pytest.raises(ConfigError, match="mesh.fsdp"):
    validate(cfg)


@pytest.fixture
def calls(monkeypatch):
  """Records jax.distributed.initialize calls instead of making them; a clean environment."""
  recorded = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda *args: recorded.append(args))
  for name in parallel.ENV:
    monkeypatch.delenv(name, raising=False)
  return recorded


def test_single_host_runs_need_no_distributed_setup(calls):
  assert parallel.initialize_distributed() is False
  assert calls == []


def test_distributed_setup_from_flags_or_environment(calls, monkeypatch):
  assert parallel.initialize_distributed("10.0.0.1:1234", 4, 0)
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.2:99")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "1")
  assert parallel.initialize_distributed()
  assert parallel.initialize_distributed(process_id=0)  # Flags win over the environment.
  assert calls == [("10.0.0.1:1234", 4, 0), ("10.0.0.2:99", 2, 1), ("10.0.0.2:99", 2, 0)]


def test_cluster_detection_leaves_the_rest_to_jax(calls):
  assert parallel.initialize_distributed(auto_detect=True)
  assert calls == [(None, None, None)]


def test_process_count_without_a_coordinator_is_an_error(calls):
  with pytest.raises(parallel.DistributedError, match="--coordinator_address"):
    parallel.initialize_distributed(num_processes=2, process_id=1)
  assert calls == []


def test_global_batch_and_state_placement_on_this_process():
  mesh = parallel.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}))
  batch = {"x": np.arange(8 * 3).reshape(8, 3), "y": np.ones((8, 3), np.int32)}
  placed = parallel.global_batch(batch, mesh, 8)
  assert placed["x"].sharding == parallel.batch_sharding(mesh)
  np.testing.assert_array_equal(placed["x"], batch["x"])
  tree = {"w": np.ones((4, 6), np.float32), "b": np.zeros(6, np.float32)}
  shardings = parallel.state_shardings(mesh, tree)
  on_mesh = parallel.put_global(tree, shardings)
  assert jax.tree.map(lambda a: a.sharding, on_mesh) == shardings
  jax.tree.map(np.testing.assert_array_equal, parallel.to_host(on_mesh, mesh), tree)
  abstract = parallel.abstract_with_shardings(tree, shardings)
  assert abstract["w"].shape == (4, 6) and abstract["w"].sharding == shardings["w"]
