"""Golden values (nanodo-style): two train steps of SMT, DMT and BPTT on a fixed tiny config,
seed and batch, with the loss and gradient norm pinned to recorded values (SMT's with the memory
of the empty past, DMT rolling out from it with gradients through the rollout, updater only). A
refactor that changes the numerics of any objective, model or the optimizer fails here at once;
a deliberate change of an objective re-records its values in the same commit."""

import jax
import numpy as np
import pytest
from conftest import make_tiny_config, random_batch

from smt_jax.models import init_params
from smt_jax.train.optimizer import make_optimizer
from smt_jax.train.step import TrainState, make_train_step

# method -> [(loss, grad_norm) of update 1, of update 2], recorded on CPU in float32.
GOLDEN = {
  "smt": [(2.6367921829223633, 15.850461959838867), (2.5026824474334717, 12.031296730041504)],
  "dmt": [(3.819286584854126, 2.319356918334961), (3.8020596504211426, 2.2399346828460693)],
  "bptt": [(2.6088171005249023, 2.488259792327881), (2.55474591255188, 2.7159056663513184)],
}


@pytest.mark.parametrize("method", sorted(GOLDEN))
def test_two_train_steps_match_recorded_values(method):
  cfg = make_tiny_config(**{"method": method, "optim.warmup_steps": 0})
  params = init_params(cfg, jax.random.key(0))
  tx = make_optimizer(cfg)
  state = TrainState(np.int32(0), params, tx.init(params))
  batch = random_batch(jax.random.key(1), 4, cfg.data.T, cfg.data.vocab_size)
  step = jax.jit(make_train_step(cfg, tx))
  for i, (loss, grad_norm) in enumerate(GOLDEN[method]):
    state, metrics = step(state, batch, jax.random.key(2 + i))
    np.testing.assert_allclose(
      [float(metrics["loss"]), float(metrics["grad_norm"])], [loss, grad_norm], rtol=1e-5
    )
