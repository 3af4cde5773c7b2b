"""benchmarks/gpu_check.py before it ever meets a GPU: its --smoke run end to end on the CPU (every step done with
finite positive numbers, the plan printed with estimated GPU seconds, the JSON and the log written, the JSON
rendered), and a run cut short by its budget that still writes a JSON whose later steps say "skipped: budget"."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
STEPS = "abcdef"


def check(out: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def status_ok(status: str) -> bool:
    return status == "done" or status.startswith(("skipped: ", "failed: "))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out = tmp_path_factory.mktemp("gpu_check")
    done = check(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads((out / "gpu_check.json").read_text()), out


@pytest.mark.slow  # ~1 min: one CLI process per stage of step e
def test_smoke_run_measures_every_step(smoke):
    done, report, out = smoke
    steps = report["steps"]
    assert list(steps) == list(STEPS) and all(status_ok(s["status"]) for s in steps.values())
    assert [k for k in "abcdf" if steps[k]["status"] != "done"] == [], {k: s["status"] for k, s in steps.items()}
    assert report["finished"] and report["device"] == "cpu" and report["mode"] == "smoke" and report["seed"] == 0
    assert report["options"]["smoke"] and report["versions"]["torch"]

    env = steps["a"]["result"]
    assert positive(env["peak_tflops"]) and all(positive(m["tflops"]) for m in env["matmuls"])

    trainer = steps["b"]["result"]
    measured = {v["name"]: v for v in trainer["variants"]}
    for name in ("trainer", "hand-written loop"):
        assert measured[name]["status"] == "done" and positive(measured[name]["tokens_per_s"])
        assert positive(measured[name]["mfu"])  # against a CPU's small-product peak: > 0, not bounded by 1
    assert status_ok(measured["trainer, torch.compile"]["status"])  # a compile failure is recorded, not fatal
    assert positive(trainer["trainer_over_hand"]) and positive(trainer["flops_per_token"])
    assert "6*N" in trainer["flops_formula"] and positive(trainer["adamw_step_ms"])

    engine = steps["c"]["result"]
    assert all(positive(engine[k]) for k in ("pretrain_seq_per_s", "finetune_seq_per_s", "ratio_vs_fastest"))

    stacked = [p for p in steps["d"]["result"]["points"] if p["n"] == 2]
    assert {p["data"] for p in stacked} == {"online", "fixed batch"}
    assert all(p["status"] == "done" and positive(p["per_run_gain"]) for p in stacked)

    audit = steps["f"]["result"]["points"]
    assert {p["mode"] for p in audit} == {"full", "LoRA r=16"}
    assert all(p["status"] == "done" and positive(p["seconds_per_step"]) and p["peak_memory_gib"] is None
               for p in audit)  # no CUDA: no peak memory, null rather than a made-up number

    stages = steps["e"]["result"]["stages"] if steps["e"]["result"] else []
    assert [s["name"] for s in stages] == ["pretrain", "finetune", "prune", "probe", "reft"]
    assert all(status_ok(s["status"]) or s["status"] == "not reached" for s in stages)


@pytest.mark.slow
def test_smoke_run_prints_its_plan_and_leaves_a_log_and_a_table(smoke):
    done, report, out = smoke
    assert "plan:" in done.stdout and "est. GPU s" in done.stdout and "TFLOP/s" in done.stdout
    assert all(positive(report["steps"][k]["estimate_gpu_s"]) for k in STEPS)
    assert "step f: done" in (out / "gpu_check.log").read_text()
    table = subprocess.run([sys.executable, str(SCRIPT), "--render", str(out / "gpu_check.json")],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert table.returncode == 0 and all(f"| {k}: " in table.stdout for k in STEPS), table.stderr


def test_a_run_cut_by_its_budget_still_reports(tmp_path):
    done = check(tmp_path, "--budget-s", "3", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert report["finished"] and report["options"]["budget_s"] == 3
    assert all(status_ok(s["status"]) for s in steps.values())
    assert steps["e"]["status"] == steps["f"]["status"] == "skipped: budget"
    assert not (tmp_path / "gpu_check.json.tmp").exists()  # written by os.replace, nothing left half-done
