"""The offline GPU-node kit (scripts/offline_kit.py): the node's kit fits its limits, and the
kit's CPU mode runs end to end in a fresh venv that has only torch, from the folder alone.

Both build a kit, which downloads wheels from the package index (as the builder does on
the machine that makes the kit), so both are marked slow; the end-to-end one also makes a
venv and installs torch into it (a few minutes on 2 cores).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT, cli_env

BUILDER = ROOT / "scripts" / "offline_kit.py"


def _build(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(BUILDER), *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_node_kit_dry_run_fits_the_upload_and_the_command_line(tmp_path):
    checks = _build(str(tmp_path / "kit"), "--dry-run")
    assert checks["python_version"] == "3.12" and checks["dry_run"]
    assert checks["fits_64_mib"], checks["total_bytes"]
    assert checks["line_fits"], checks["line_chars"]
    assert not (tmp_path / "kit").exists()  # a dry run writes no kit


@pytest.mark.slow
def test_kit_cpu_mode_runs_in_a_venv_with_only_torch(tmp_path):
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    kit = tmp_path / "pixeldance-kit"
    _build(str(kit), "--python-version", version, "--node-has", "--cpu")  # numpy etc. travel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    torch_version = torch.__version__.split("+")[0]
    subprocess.run([py, "-m", "pip", "install", "-q", f"torch=={torch_version}"], check=True)
    line = (kit / "RUN.txt").read_text().strip()
    out = tmp_path / "out"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "OUT": str(out)}
    result = subprocess.run(
        ["bash", "-c", line], cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "kit_results.jsonl").read_text().splitlines()]
    parts = {r["part"]: r for r in rows}
    assert set(parts) == {"correctness", "generation", "guidance", "unet_train"}
    assert all("error" not in r and r["torch"] and r["device"] == "cpu" for r in rows)
    assert parts["correctness"]["same_seed_twice_max_diff"] == 0
    assert parts["generation"]["float32_cache3"]["seconds_per_clip"] > 0
    files = list(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    assert Path(out / "fp32_bf16_frames.png").exists()
