"""Fast checks of the benchmark logic that is not timing: the sequential-depth counter, the
jaxpr FLOP counter and the credit-assignment gradients (experiments/bench)."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_tiny_config

from experiments.bench import common, credit, depth
from smt_jax.models import init_params
from smt_jax.objectives import method_of

W = jnp.eye(3) * 0.5
X = jnp.ones((7, 3))
f = depth.marked(lambda w, x: jnp.tanh(w @ x))


def scan_rnn(w, xs, cut=False, per_step=1, reverse=False):
  def body(m, x):
    if cut:
      m = jax.lax.stop_gradient(m)
    for _ in range(per_step):
      m = f(w, m)
    m = m + x
    return m, m

  return jax.lax.scan(body, xs[0], xs, reverse=reverse)[1].sum()


@pytest.mark.parametrize(
  "fn,expected",
  [
    (lambda w, xs: f(w, f(w, f(w, xs[0]))), 3),  # a chain of three calls
    (lambda w, xs: f(w, xs[0]) + f(w, xs[1]), 1),  # two independent calls
    (lambda w, xs: jax.vmap(lambda x: f(w, x))(xs).sum(), 1),  # vmapped over time: depth 1
    (lambda w, xs: jnp.sum(xs), 0),  # no updater at all
    (scan_rnn, 7),  # a scan of 7 steps, one call on the carry each
    (lambda w, xs: scan_rnn(w, xs, per_step=2), 14),
    (lambda w, xs: scan_rnn(w, xs, reverse=True), 7),
    (
      lambda w, xs: jax.lax.scan(lambda c, x: (c + x, f(w, x)), xs[0], xs)[1].sum(),
      1,
    ),  # call off the carry
    (
      lambda w, xs: jax.lax.scan(  # nested scans: 3 outer x 7 inner
        lambda c, _: (jax.lax.scan(lambda m, x: (f(w, m) + x, None), c, xs)[0], None),
        xs[0],
        None,
        length=3,
      )[0].sum(),
      21,
    ),
    (
      lambda w, xs: f(w, jax.lax.cond(xs[0, 0] > 0, lambda x: f(w, f(w, x)), lambda x: x, xs[1])),
      3,
    ),
    (lambda w, xs: f(w, jax.jit(lambda x: f(w, x))(xs[0])), 2),  # through an unnamed jit
    (lambda w, xs: f(w, jax.checkpoint(lambda x: f(w, x))(xs[0])), 2),  # through remat
  ],
)
def test_sequential_depth_of_hand_built_functions(fn, expected):
  assert depth.sequential_depth(fn, W, X) == expected


def test_stop_gradient_cuts_the_gradient_path_but_not_the_sequence():
  fn = lambda w, xs: scan_rnn(w, xs, cut=True)
  assert depth.sequential_depth(fn, W, X) == 7
  assert depth.sequential_depth(fn, W, X, cut_stop_gradient=True) == 1
  assert depth.sequential_depth(scan_rnn, W, X, cut_stop_gradient=True) == 7


def test_depth_of_the_gradient_doubles_the_chain():
  # Forward chain of 7, then the transposed chain of 7 back through the scan.
  assert depth.sequential_depth(jax.grad(scan_rnn), W, X) == 14


def test_matmul_flops_multiplies_scans_by_their_length():
  a = jnp.ones((4, 5))
  b = jnp.ones((5, 6))
  assert depth.matmul_flops(lambda a, b: a @ b, a, b) == 2 * 4 * 5 * 6
  fn = lambda a, b: jax.lax.scan(lambda c, _: (c, a @ b), 0.0, None, length=9)[1]
  assert depth.matmul_flops(fn, a, b) == 9 * 2 * 4 * 5 * 6


def tiny_config(method, T=8):
  return make_tiny_config(
    method=method, **{"data.T": T, "data.vocab_size": 16, "model.teacher.Tf": 2, "dmt.Td": 4}
  )


@pytest.mark.parametrize(
  "variant,forward,gradient",
  [
    ("smt_all", 1, 1),
    ("smt_n1", 1, 1),
    ("bptt", 8, 8),
    ("bptt_remat", 8, 8),
    ("dmt", 8, 8),  # The studies' DMT: T = 8 updates from m_empty, gradients through them all.
    ("dmt_sg", 9, 1),  # 8 scanned updates, then regrow's batched one on their outputs.
    ("dmt_32", 4, 1),  # From the memory after x[0..Tc-1]: Td - 1 = 3 updates, detached.
    ("dmt_32_bp", 3, 3),  # The same 3 updates, gradients through them.
  ],
)
def test_depth_of_the_objectives(variant, forward, gradient):
  cfg = common.variant_config(tiny_config("smt"), variant)
  got = depth.objective_depths(cfg)
  assert (got["forward_depth"], got["gradient_path_depth"]) == (forward, gradient)
  # The patch is undone: no marked call remains.
  params = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))
  batch = jax.eval_shape(lambda: common.random_batch(jax.random.PRNGKey(0), 2, 8, 16))
  loss = lambda p, b, r: method_of(cfg).loss(p, b, r, cfg)[0]
  assert depth.sequential_depth(loss, params, batch, jax.random.PRNGKey(0)) == 0


@pytest.mark.integration
@pytest.mark.parametrize("T", [8, 12])
def test_gradient_path_of_the_two_dmt_rows_is_T_and_1(T):
  """The studies' DMT (from m_empty through all T tokens, gradients through the rollout) and
  the per-step stop-gradient DMT, measured on the backward pass of the objective."""
  base = make_tiny_config(method="dmt", **{"data.T": T, "data.vocab_size": 16})
  paths = {v: depth.objective_depths(common.variant_config(base, v)) for v in ("dmt", "dmt_sg")}
  assert paths["dmt"]["gradient_path_depth"] == T
  assert paths["dmt_sg"]["gradient_path_depth"] == 1


def test_backward_depth_counts_the_calls_a_gradient_crosses():
  assert depth.backward_depth(scan_rnn, W, X) == 7
  assert depth.backward_depth(lambda w, xs: scan_rnn(w, xs, per_step=2), W, X) == 14
  assert depth.backward_depth(lambda w, xs: scan_rnn(w, xs, cut=True), W, X) == 1
  # Calls off the gradient's way (on a detached input) are not counted, however long.
  off = lambda w, xs: jnp.sum(jax.lax.stop_gradient(f(w, f(w, xs[0])))) + jnp.sum(f(w, xs[1]))
  assert depth.backward_depth(off, W, X) == 1


def _distinct_token_batch(T, vocab):
  """One sequence whose tokens are all different, so an embedding-table row is used at exactly
  one position: d loss / d table[x_s] is then d loss / d e_s (an independent reference)."""
  x = jax.random.permutation(jax.random.PRNGKey(3), vocab)[:T].astype(jnp.int32)[None]
  return {"x": x, "y": jnp.roll(x, -1, axis=1)}


@pytest.mark.integration
def test_bptt_credit_matches_embedding_table_gradient():
  cfg = common.variant_config(tiny_config("bptt"), "bptt")
  from smt_jax.models import build_models

  models = build_models(cfg)
  params = init_params(cfg, jax.random.PRNGKey(1))
  batch = _distinct_token_batch(8, 16)
  t = 6
  got = np.asarray(credit.bptt_credit(cfg, params, batch, t))

  def loss(table):
    p = jax.tree_util.tree_map(lambda a: a, params)
    p["updater"]["core"]["embed"]["embedding"] = table
    m = models.initial_memory(p, 1)
    for s in range(t + 1):
      m = models.step(p, m, batch["x"][:, s])
    logits = models.read(p, m)
    return -jax.nn.log_softmax(logits)[0, batch["y"][0, t]]

  g = jax.jit(jax.grad(loss))(params["updater"]["core"]["embed"]["embedding"])  # One compile.
  rows = np.asarray(jnp.linalg.norm(g[batch["x"][0, : t + 1]], axis=-1))[::-1]
  np.testing.assert_allclose(got, rows, rtol=1e-4, atol=1e-7)
  assert got.shape == (t + 1,) and np.all(got > 0)


@pytest.mark.integration
def test_smt_encoder_credit_matches_embedding_table_gradient_and_is_zero_past_the_window():
  cfg = common.variant_config(tiny_config("smt"), "smt_all")
  from smt_jax.models import build_models

  models = build_models(cfg)
  params = init_params(cfg, jax.random.PRNGKey(2))
  batch = _distinct_token_batch(8, 16)
  t, tc = 5, cfg.model.teacher.Tc
  got = np.asarray(credit.smt_encoder_credit(cfg, params, batch, t))

  def loss(table):
    p = jax.tree_util.tree_map(lambda a: a, params)
    p["encoder"]["embed"]["embedding"] = table
    m = models.encode(p, batch["x"][:, t - tc + 1 : t + 1])
    logits = models.decode(p, m, jnp.zeros((1, 0), jnp.int32))[:, 0]
    return -jax.nn.log_softmax(logits)[0, batch["y"][0, t]]

  g = jax.jit(jax.grad(loss))(params["encoder"]["embed"]["embedding"])  # One compile.
  rows = np.asarray(jnp.linalg.norm(g[batch["x"][0, t - tc + 1 : t + 1]], axis=-1))[::-1]
  np.testing.assert_allclose(got, rows, rtol=1e-4, atol=1e-7)
  # Before the sequence start the window is padding: no credit.
  got_early = np.asarray(credit.smt_encoder_credit(cfg, params, batch, 1))
  np.testing.assert_array_equal(got_early[2:], 0.0)


def test_delayed_copy_labels():
  b = credit.delayed_copy_batch(jax.random.PRNGKey(0), 2, 10, 5, 3)
  np.testing.assert_array_equal(b["y"][:, :3], -1)
  np.testing.assert_array_equal(b["y"][:, 3:], b["x"][:, :7])


def test_side_by_side_without_the_original_reports_why():
  from experiments.bench import side

  assert side.open_peer("", "")[0] is None
  peer, why = side.open_peer("/nonexistent/smt", "python3")
  assert peer is None and "src/model.py" in why


def test_select_rows_by_key_pattern():
  from experiments.bench import run_all, side

  g = run_all.grid("cpu", True)
  rows = side.reference_rows(g, g["ref_cfg"])
  keys = [r.key for r in rows]
  assert [r.key for r in side.select_rows(rows, "")] == keys
  assert [r.key for r in side.select_rows(rows, "^bptt")] == [k for k in keys if k[:4] == "bptt"]
  assert [r.key for r in side.select_rows(rows, "dmt_32$")] == ["dmt_32"]
  with pytest.raises(SystemExit, match="matches no side-by-side row; the rows are: .*bptt_T64"):
    side.select_rows(rows, "nope")


@pytest.mark.integration
@pytest.mark.parametrize("variant", ["dmt", "dmt_32"])
def test_the_bench_step_is_the_training_step_of_a_run(variant, tmp_path):
  """One step of the bench's compiled step from its fresh state gives the parameters and loss
  of one step of train_and_evaluate (what experiments/run.py runs) with the same config."""
  from smt_jax.train import load_params, train_and_evaluate
  from smt_jax.train.metrics import read_metrics

  cfg = common.variant_config(tiny_config("smt"), variant)
  cfg.data.name = "retrieval"
  cfg.update_from_flattened_dict(
    {
      "train.num_steps": 1,
      "train.batch_size": 4,
      "train.eval_batches": 1,
      "train.eval_batch_size": 2,
    }
  )
  cfg.update_from_flattened_dict({"log.every": 1, "log.plot": False, "train.final_eval": False})
  step = common.CompiledStep(cfg, cfg.train.batch_size)
  metrics = jax.device_get(step.call())
  train_and_evaluate(cfg, tmp_path)
  params, at = load_params(tmp_path)
  assert at == 1
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), step.state.params, params
  )
  (row,) = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
  np.testing.assert_allclose(row["loss"], metrics["loss"], rtol=1e-6)


@pytest.mark.integration
def test_stream_targets_compare_both_stream_rows_with_the_original_and_window_smt():
  from experiments.bench import report

  def row(key, labels, ratio, n_dec=0):
    return dict(
      key=key, labels_per_s=labels, ratio=ratio, batch=8, T=128, n_dec=n_dec, peer_labels_per_s=24.0
    )

  res = {
    "side": {
      "rounds": 5,
      "rows": [
        row("smt_all_window", 45.0, 1.85),
        row("smt_all_stream", 133.0, 5.5),
        row("smt_all_stream_dec", 250.0, 10.4, n_dec=16),
      ],
    }
  }
  got = {t["name"]: (round(t["value"], 3), t["met"]) for t in report.targets(res)}
  assert got == {
    "Stream-SMT all timesteps: >= 10x the original's memory labels/s": (5.5, False),
    "Stream-SMT all timesteps: >= 4x window-SMT's memory labels/s": (round(133 / 45, 3), False),
    "Stream-SMT, 16 decoded per sequence: >= 10x the original's memory labels/s": (10.4, True),
    "Stream-SMT, 16 decoded per sequence: >= 4x window-SMT's memory labels/s": (
      round(250 / 45, 3),
      True,
    ),
  }


@pytest.mark.integration
def test_window_target_states_the_flop_bound_from_the_rows_flops():
  """Hand-computed: window 480 MFLOP per label; stream 3.0 GFLOP for 18 labels (166.7 M); the
  16 extra decoded memories of the all-decoded row cost 1.6 GFLOP, 100 M each, 20 decoded per
  18 labels: 111.1 M per label, so 480 / 111.1 = 4.32x with only the decoder paid."""
  from experiments.bench import report

  def row(key, flops, labels, n_dec=0):
    return dict(
      key=key, labels_per_s=1.0, batch=2, T=9, n_dec=n_dec, flops=flops, memory_labels=labels
    )

  rows = [
    row("smt_all_window", 48e9, 100),
    row("smt_all_stream", 3.0e9, 18),
    row("smt_all_stream_dec", 1.4e9, 18, n_dec=2),
  ]
  notes = {t["name"]: t["note"] for t in report.targets({"side": {"rounds": 1, "rows": rows}})}
  assert notes["Stream-SMT all timesteps: >= 4x window-SMT's memory labels/s"].endswith(
    "XLA FLOPs per label 480 vs 167 M: 2.88x at equal FLOP/s; the decoder alone costs 111 M per "
    "label, so with the encoder and updater free 4.32x"
  )
  assert notes["Stream-SMT, 2 decoded per sequence: >= 4x window-SMT's memory labels/s"].endswith(
    "XLA FLOPs per label 480 vs 78 M: 6.17x at equal FLOP/s"
  )


@pytest.mark.integration
def test_report_only_rederives_the_report_from_the_json(tmp_path):
  from experiments.bench import report, run_all

  with pytest.raises(SystemExit, match="run the benchmark first"):
    run_all.main(["--report_only", "--device", "cpu", "--out", str(tmp_path), "--docs", ""])
  measured = pathlib.Path(run_all.HERE) / "results" / "bench_cpu.json"
  res = json.loads(measured.read_text())
  res.pop("targets")
  (tmp_path / "bench_cpu.json").write_text(json.dumps(res))
  doc = tmp_path / "bench.md"
  run_all.main(["--report_only", "--device", "cpu", "--out", str(tmp_path), "--docs", str(doc)])
  again = json.loads((tmp_path / "bench_cpu.json").read_text())
  assert again["targets"] == json.loads(json.dumps(report.targets(res), default=float))
  assert again["side"] == res["side"] and res["command"] in doc.read_text()


@pytest.mark.integration
def test_side_rounds_measure_the_matmul_rate_that_the_flop_target_uses():
  from experiments.bench import report, side

  rates = iter([40.0, 60.0, 50.0])
  plain = dict(d_model=16, depth=1, heads=2, T=8)
  rows = [side.Row("plain", "plain", None, 2, None, ""), side.Row("plain2", "p", None, 2, None, "")]
  out = side.side_section(rows, None, 3, plain, lambda *a: None, matmul=lambda: next(rates))
  assert out["matmul_gflops_rounds"] == [40.0, 60.0, 50.0] and out["matmul_gflops"] == 50.0
  # The FLOP target divides by the rounds' median, not by the start/end measurements.
  row = dict(key="smt_all_stream", label="SMT all", labels_per_s=1.0, achieved_gflops_xla=20.0)
  res = {"matmul_gflops": 100.0, "matmul_gflops_end": 100.0, "side": {**out, "rows": [row]}}
  (flop,) = [t for t in report.targets(res) if "FLOP/s" in t["name"]]
  assert flop["value"] == 20.0 / 50.0 and not flop["met"]


HLO_SAMPLE = """HloModule jit_step, entry_computation_layout={(f32[4,8]{1,0})->f32[4,8]{1,0}}

%add.clone (x.1: f32[], y.1: f32[]) -> f32[] {
  %x.1 = f32[] parameter(0)
  %y.1 = f32[] parameter(1)
  ROOT %add.2 = f32[] add(%x.1, %y.1)
}

%fused_dot (p0: f32[4,8], p1: f32[8,8]) -> f32[4,8] {
  %p0 = f32[4,8]{1,0} parameter(0)
  %p1 = f32[8,8]{1,0} parameter(1)
  ROOT %d = f32[4,8]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_move (p0.2: f32[4,8]) -> f32[8,4] {
  %p0.2 = f32[4,8]{1,0} parameter(0)
  %t = f32[8,4]{0,1} transpose(%p0.2), dimensions={1,0}
  ROOT %c = f32[8,4]{1,0} copy(%t)
}

%fused_math (p0.3: f32[4,8]) -> f32[4] {
  %p0.3 = f32[4,8]{1,0} parameter(0)
  %e = f32[4,8]{1,0} exponential(%p0.3)
  %z = f32[] constant(0)
  ROOT %r = f32[4]{0} reduce(%e, %z), dimensions={1}, to_apply=%add.clone
}

ENTRY %main.9 (Arg_0.1: f32[4,8], Arg_1.2: f32[8,8]) -> f32[4,8] {
  %Arg_0.1 = f32[4,8]{1,0} parameter(0)
  %Arg_1.2 = f32[8,8]{1,0} parameter(1)
  %ynn_fusion.3 = f32[4,8]{1,0} fusion(%Arg_0.1, %Arg_1.2), kind=kCustom, calls=%fused_dot
  %copy_fusion.1 = f32[8,4]{1,0} fusion(%ynn_fusion.3), kind=kLoop, calls=%fused_move
  %exp_fusion = f32[4]{0} fusion(%ynn_fusion.3), kind=kLoop, calls=%fused_math
  %gemm = f32[4,8]{1,0} custom-call(%Arg_0.1, %Arg_1.2), custom_call_target="__cublas$gemm"
  ROOT %dot.7 = f32[4,8]{1,0} dot(%gemm, %Arg_1.2), lhs_contracting_dims={1}
}
"""


def test_profile_sorts_ops_by_what_their_hlo_computes():
  from experiments.bench import op_profile

  kinds = op_profile.op_kinds(HLO_SAMPLE)
  assert {
    n: kinds[n] for n in ("ynn_fusion.3", "copy_fusion.1", "exp_fusion", "gemm", "dot.7")
  } == {
    "ynn_fusion.3": "matmul",
    "copy_fusion.1": "layout",
    "exp_fusion": "other",
    "gemm": "matmul",
    "dot.7": "matmul",
  }
  times = {"ynn_fusion.3": 2.0, "copy_fusion.1": 0.5, "exp_fusion": 1.0, "Executor": 9.0}
  assert op_profile.time_by_kind(kinds, times) == {"matmul": 2.0, "layout": 0.5, "other": 1.0}
  # 10 GFLOP in a 1 s step, 60 % of the op time outside matmuls, matmul at 50 GFLOP/s:
  # 10 / (10 / 50 + 0.6) = 12.5 GFLOP/s.
  share = {"matmul": 0.4, "layout": 0.2, "other": 0.4}
  assert abs(op_profile.flop_bound(10e9, 1.0, share, 50.0) - 12.5) < 1e-9


@pytest.mark.integration
def test_profile_of_a_real_step_covers_its_ops():
  from experiments.bench import op_profile, side

  plain = dict(d_model=32, depth=1, heads=2, T=16)
  prepared = side.Prepared(side.Row("plain", "plain", None, 2, None, ""), plain)
  r = op_profile.profile_row(prepared, steps=2)
  assert abs(sum(r["share"].values()) - 1) < 1e-9
  assert r["op_s"]["matmul"] > 0 and r["op_s"]["other"] > 0 and r["step_s"] > 0


def test_stage_cost_variants_set_the_named_fields_of_the_stage_config():
  """A variant is its stage's config (pipeline resolved) with the listed fields set; a field the
  stage has not is refused by name."""
  from experiments.bench import stage_cost
  from experiments.configs import mnist

  assert stage_cost.parse_variant("model.teacher.Tf=4,smt.n_dec=8") == {
    "model.teacher.Tf": 4,
    "smt.n_dec": 8,
  }
  assert stage_cost.parse_variant("") == {}
  cfg = mnist.get_config("quick=1")
  as_run = stage_cost.variant_config(cfg, "smt", {})
  changed = stage_cost.variant_config(cfg, "smt", {"model.teacher.Tf": 2, "smt.n_dec": 3})
  assert (changed.model.teacher.Tf, changed.smt.n_dec) == (2, 3)
  assert changed.method == "smt" and changed.train.num_steps == as_run.train.num_steps
  changed.model.teacher.Tf, changed.smt.n_dec = as_run.model.teacher.Tf, as_run.smt.n_dec
  assert changed.to_json(sort_keys=True) == as_run.to_json(sort_keys=True)  # Nothing else.
  with pytest.raises(SystemExit, match="model.teacher.Tff"):
    stage_cost.variant_config(cfg, "smt", {"model.teacher.Tff": 2})
  with pytest.raises(SystemExit, match="KEY=VALUE"):
    stage_cost.parse_variant("smt.n_dec")


def test_stage_cost_times_a_config_file_at_its_argument():
  """--config NAME:ARG is the config file's get_config(ARG), as run.py loads it, and names the
  JSON file without characters a file name should not hold."""
  from experiments.bench import stage_cost
  from experiments.configs import tasks
  from experiments.repro import runner

  spec = "tasks:task=stack,T=64"
  loaded = runner.load_config(spec)
  assert loaded.to_json(sort_keys=True) == tasks.get_config("task=stack,T=64").to_json(
    sort_keys=True
  )
  assert (loaded.data.name, loaded.data.T) == ("stack", 64)
  assert stage_cost.config_stem(spec) == "tasks_task-stack_T-64"
  assert stage_cost.config_stem("mnist") == "mnist"
