"""The GPU smoke check (benchmarks/gpu_smoke.py) does not bit-rot: its CPU mode runs here."""

import json
import subprocess
import sys

import pytest

from helpers import ROOT, cli_env

pytestmark = pytest.mark.slow


def test_gpu_smoke_runs_in_cpu_mode(tmp_path):
    env = {**cli_env(), "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py"), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "no GPU: CPU smoke only" in done.stderr
    report = json.loads(out.read_text())
    assert report == json.loads(done.stdout.splitlines()[-1])
    assert report["ok"] and report["gpus"] == 0
    assert report["tiny_bf16"]["ok"] and report["tiny_resume"]["max_abs_diff"] == 0.0
    assert report["sd15_shaped_narrow_cpu"]["output_dtype"] == "torch.bfloat16"
