"""Slow: every reproduction study end to end in --quick mode through run_all, checking that each
report, its results and its plots exist, the metrics are finite, and shared runs were trained
once."""

import json
import math
import pathlib
import subprocess
import sys

import pytest

from experiments.repro import run_all

pytestmark = pytest.mark.integration  # The studies end to end (also slow).
ROOT = pathlib.Path(__file__).resolve().parents[1]


def finite(x) -> bool:
  return x is not None and math.isfinite(x)


@pytest.mark.slow
def test_every_study_quick_end_to_end(tmp_path):
  doc, out = tmp_path / "results.md", tmp_path / "out"
  subprocess.run(
    [
      sys.executable,
      str(ROOT / "experiments" / "repro" / "run_all.py"),
      "--quick",
      "--jobs",
      "2",
      "--out",
      str(out),
      "--doc",
      str(doc),
    ],
    check=True,
    cwd=ROOT,
    timeout=3600,
  )
  text = doc.read_text()
  for name, study in run_all.STUDIES.items():
    folder = out / study.folder(True)
    results = json.loads((folder / "results.json").read_text())
    assert len(results) == len(study.runs(True, 0)), f"{name}: a run did not finish"
    for r in results:
      for stage in r["stages"].values():
        assert finite(stage["rnn_acc"]) and finite(stage["rnn_loss"]), name
    report = (folder / "report.md").read_text()
    assert "QUICK-MODE" in report and "**Verdict:**" in report, name
    assert f"<!-- repro:{name}_quick begin -->" in text
  length = json.loads((out / "length_quick" / "results.json").read_text())
  for r in length:
    curve = r["stages"]["dmt"]["length"]
    assert all(finite(a) for a in curve["rnn_acc"] + curve["teacher_acc"])
  for plot in ("credit_quick_credit.png", "length_quick_length.png"):
    assert (tmp_path / "results" / plot).is_file(), plot
  trained = {p.parent.name for p in (out / "retrieval_quick" / "runs").glob("*/result.json")}
  assert trained == {
    r.name for s in ("credit", "updaters", "ablations") for r in run_all.STUDIES[s].runs(True, 0)
  }, "shared runs: one folder each"
