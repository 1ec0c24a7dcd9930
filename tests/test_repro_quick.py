"""Slow: one reproduction study end to end in --quick mode (a few CPU minutes), checking that the
report, the results and the plot exist and the metrics are finite."""

import json
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_length_study_quick_end_to_end(tmp_path):
  doc = tmp_path / "results.md"
  subprocess.run([sys.executable, str(ROOT / "experiments" / "repro" / "length.py"), "--quick",
                  "--out", str(tmp_path / "out"), "--doc", str(doc)], check=True, cwd=ROOT,
                 timeout=1800)
  out = tmp_path / "out" / "length_quick"
  results = json.loads((out / "results.json").read_text())
  assert results, "no run finished"
  for r in results:
    for stage in r["stages"].values():
      assert math.isfinite(stage["rnn_acc"]) and math.isfinite(stage["rnn_loss"])
    length = r["stages"]["dmt"]["length"]
    assert all(math.isfinite(a) for a in length["rnn_acc"] + length["teacher_acc"])
  report = (out / "report.md").read_text()
  assert "QUICK-MODE" in report and "| length |" in report
  assert (out / "length.png").is_file()
  text = doc.read_text()
  assert "<!-- repro:length_quick begin -->" in text
  assert (tmp_path / "results" / "length_quick_length.png").is_file()
