"""Training runs as a user starts them (``python -m pixeldance.cli train``, under torchrun for
several processes), killed with SIGKILL after a checkpoint, and their checkpoints compared."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
from safetensors.torch import load_file

from helpers import ROOT, cli_env

TINY = ROOT / "configs" / "tiny.yaml"


def nan_losses_at(monkeypatch, steps: list[int]) -> None:
    """Make every micro-batch loss of these optimizer steps NaN (as a diverging run's would be),
    by wrapping the loop's per-micro-batch objective for the rest of the test."""
    from pixeldance.train import loop

    objective = loop.micro_batch_loss

    def with_nan(run, batch, generator):
        loss = objective(run, batch, generator)
        return loss * float("nan") if run.step in steps else loss

    monkeypatch.setattr(loop, "micro_batch_loss", with_nan)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_cmd(procs: int, data: Path, out: Path, *args: str) -> list[str]:
    """``pixeldance train`` on the tiny config with ``data`` (a Dancing Shapes folder)."""
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(procs)]
        launcher += ["--master_port", str(free_port())]
    return [
        *launcher,
        "-m",
        "pixeldance.cli",
        "train",
        "--config",
        str(TINY),
        "--data",
        str(data / "manifest.csv"),
        "--output-dir",
        str(out),
        *args,
    ]


def sets(*pairs: str) -> list[str]:
    return [x for kv in pairs for x in ("--set", kv)]


def run_ok(cmd: list[str], timeout: float = 600) -> str:
    done = subprocess.run(
        cmd, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    return out


def run_killed_after(cmd: list[str], folder: Path, step: int, timeout: float = 600) -> bool:
    """Start ``cmd``, SIGKILL it and every process it started once checkpoint ``step`` is
    complete. Returns False if the run had already finished (then nothing was killed)."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker = folder / f"checkpoint-{step:08d}" / "COMPLETE"
    deadline = time.time() + timeout
    while not marker.exists():
        assert proc.poll() is None, (
            f"the run ended (code {proc.returncode}) before checkpoint {step}"
        )
        assert time.time() < deadline, f"no checkpoint {step} after {timeout} s"
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    finished = proc.poll() is not None
    for p in [*children, psutil.Process(proc.pid)] if not finished else []:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    return not finished


def checkpoint_tensors(folder: Path, step: int, name: str) -> dict[str, torch.Tensor]:
    return load_file(folder / f"checkpoint-{step:08d}" / f"{name}.safetensors")


def assert_same_checkpoint(a: Path, b: Path, step: int, names=("unet", "ema", "optimizer")):
    """Checkpoint ``step`` of runs ``a`` and ``b`` hold bit-identical tensors."""
    for name in names:
        x, y = checkpoint_tensors(a, step, name), checkpoint_tensors(b, step, name)
        assert x.keys() == y.keys(), name
        differ = [k for k in x if not torch.equal(x[k], y[k])]
        assert not differ, f"{name}: {len(differ)} tensors differ, e.g. {differ[:3]}"


def rank_env(rank: int, world: int, port: int) -> dict:
    """What a launcher gives process ``rank`` of ``world`` (torchrun's variables), so a test can
    start the ranks itself: each with its own arguments (a node's own output folder) and its
    own process to signal."""
    env = cli_env()
    env.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
    )  # fmt: skip
    return env


def start_ranks(cmds: list[list[str]], logs: list[Path]) -> list[subprocess.Popen]:
    """Start one process per command as the ranks of one run, output to ``logs``."""
    port = free_port()
    procs = []
    for rank, (cmd, log) in enumerate(zip(cmds, logs, strict=True)):
        with open(log, "w") as f:
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=rank_env(rank, len(cmds), port),
                    stdout=f,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
    return procs


def wait_ranks(procs: list[subprocess.Popen], timeout: float = 600) -> list[int]:
    """Every rank's exit code. As a launcher does, the ranks still running 60 s after one
    failed are killed (they would wait for it forever); all are killed at ``timeout``."""
    deadline, failed_at = time.time() + timeout, None
    try:
        while any(p.poll() is None for p in procs) and time.time() < deadline:
            if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
                failed_at = time.time()
            if failed_at is not None and time.time() > failed_at + 60:
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs]


def run_ranks(
    cmds: list[list[str]], folder: Path, timeout: float = 600
) -> tuple[list[int], list[str]]:
    """Run the ranks to their end: (exit codes, outputs)."""
    logs = [folder / f"rank{r}.log" for r in range(len(cmds))]
    codes = wait_ranks(start_ranks(cmds, logs), timeout)
    return codes, [log.read_text() for log in logs]
