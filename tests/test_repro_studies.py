"""Fast checks of the reproduction studies (experiments/repro): every study's runs, full and
quick, build configs that validate, with unique names; the shared helpers behave."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments.repro import common, run_all  # noqa: E402


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
@pytest.mark.parametrize("name", sorted(run_all.STUDIES))
def test_study_runs_validate(name, quick):
  runs = run_all.STUDIES[name].runs(quick, 0)
  assert runs, name
  assert len({r.name for r in runs}) == len(runs), "run names must be unique"
  for run in runs:
    common.validate_run(run)


def test_credit_bptt_gets_the_pipeline_budget():
  for run in run_all.STUDIES["credit"].runs(True, 1):
    cfg = common.run_config(run)
    st = cfg.pipeline.stages
    assert st.bptt.train.num_steps == st.smt.train.num_steps + st.dmt.train.num_steps


def test_overrides_reject_unknown_fields():
  cfg = common.load_config("repro_retrieval.py:T=64")
  assert cfg.data.T == 64 and cfg.model.teacher.Tc + cfg.model.teacher.Tf <= 64
  with pytest.raises(KeyError):
    common.apply_overrides(cfg, {"model.no_such_field": 1})
  common.apply_overrides(cfg, {"data.kwargs.pos_hi": 0.4})
  assert cfg.data.kwargs.pos_hi == 0.4


def test_write_section_replaces_only_its_block(tmp_path):
  doc = tmp_path / "results.md"
  doc.write_text("# Results\n\nintro\n")
  common.write_section(doc, "a", "first")
  common.write_section(doc, "b", "second")
  common.write_section(doc, "a", "third")
  text = doc.read_text()
  assert "intro" in text and "third" in text and "second" in text and "first" not in text


def test_mean_std():
  assert common.mean_std([1.0, 1.0, 1.0]) == "1.000 ± 0.000"
  assert common.mean_std([0.5]) == "0.500"
  assert common.mean_std([None, float("nan")]) == "—"
