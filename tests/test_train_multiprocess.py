"""Two processes over gloo, as GPUs run them: DDP and FSDP with image mixing and gradient
accumulation, exact resume after SIGKILL, and an LR schedule that ignores the process count.

Run alone with ``python -m pytest -m multiprocess``.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT, cli_env
from pixeldance.data.shapes_dataset import write_dataset
from train_runs import (
    assert_same_checkpoint,
    checkpoint_tensors,
    free_port,
    run_killed_after,
    run_ok,
    sets,
    train_cmd,
)

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

# one bucket of one clip per process and micro-step, so the few clips here fill the global
# batch of every run below (processes x grad_accum clips a step, up to 2 x 4)
ONE_BUCKET = (
    "data.buckets=[{name: square, height: 32, width: 32, frames: 4, batch_size: 1}]",
    "data.image_batch_size=1",
)
# images every 2nd batch, accumulation 2, bf16 autocast, gradient checkpointing
MIXED = (
    *ONE_BUCKET,
    "data.image_every=2",
    "optim.grad_accum=2",
    "optim.mixed_precision=bf16",
    "optim.gradient_checkpointing=true",
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_dataset(root, 10, seed=11, num_images=8, progress=False)
    return root


def test_ddp_and_fsdp_update_as_one_process_does():
    """Every combination of accumulation, image/video micro-steps and checkpointing: the
    2-process update (DDP and FSDP) equals one process's on the same global batches, and an
    image step moves no temporal parameter (see dist_worker.py)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(free_port()), str(ROOT / "tests" / "dist_worker.py")]
    env = cli_env()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    reports = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert {(r["accum"], r["checkpointing"]) for r in reports} == {
        (1, False),
        (2, True),
        (2, False),
        (4, True),
    }


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_processes_resume_bit_identical(shapes, tmp_path, fsdp):
    """8 steps with images, accumulation, bf16 and checkpointing on 2 processes; a second run
    SIGKILLed after its checkpoint at 4 and resumed ends bit-identical (UNet, EMA, optimizer),
    with fp32 master weights."""
    args = ["--max-steps", "8", "--checkpoint-every", "4"]
    args += sets(*MIXED, f"data.images={shapes / 'images.csv'}", f"optim.fsdp={fsdp}")
    a, b = tmp_path / "a", tmp_path / "b"
    out = run_ok(train_cmd(2, shapes, a, *args))
    assert run_killed_after(train_cmd(2, shapes, b, *args), b, 4), "finished before the kill"
    resumed = run_ok(train_cmd(2, shapes, b, *args, "--resume"))
    # the mechanism asked for is the one that ran: sharded parameters, or DDP's search
    said = "sharded across 2 processes" if fsdp else "DDP looks for unused parameters"
    assert said in out and said in resumed, out[-2000:]
    if fsdp:
        assert re.search(r"FSDP2: ([1-9]\d*) of \1 parameter tensors sharded", out), out[-2000:]
    assert_same_checkpoint(a, b, 8)
    unet = checkpoint_tensors(a, 8, "unet")
    assert {t.dtype for t in unet.values()} == {torch.float32}
    assert (b / "pipeline" / "model_index.json").exists()


@pytest.mark.parametrize("schedule", ["constant_with_warmup", "linear", "cosine"])
def test_lr_is_the_same_on_one_and_two_processes(shapes, tmp_path, schedule):
    args = ["--max-steps", "6", "--checkpoint-every", "0"]
    args += sets(
        f"optim.lr_schedule={schedule}",
        "optim.warmup_steps=3",
        "optim.ema_decay=0",
        "data.image_every=0",
        "run.log_batches=true",
    )
    lrs = {}
    for procs in (1, 2):
        out = tmp_path / f"p{procs}"
        run_ok(train_cmd(procs, shapes, out, *args))
        records = [json.loads(x) for x in (out / "batches-rank0.jsonl").read_text().splitlines()]
        lrs[procs] = [r["lr"] for r in records]
    assert lrs[1] == lrs[2]
    peak = 1e-3  # tiny.yaml's optim.lr
    assert lrs[1][:4] == pytest.approx([0.0, peak / 3, 2 * peak / 3, peak])  # the warm-up
    if schedule != "constant_with_warmup":
        assert lrs[1][5] < lrs[1][4] < peak  # and the decay after it


def test_images_every_8th_batch_with_accumulation_4(shapes, tmp_path):
    """The SD configs' setting (image_every 8, grad_accum 4): the image batch lands on a
    syncing micro-step of step 1; DDP used to stop there."""
    args = ["--max-steps", "3", "--checkpoint-every", "0"]
    args += sets(
        *ONE_BUCKET,
        "data.image_every=8",
        "optim.grad_accum=4",
        f"data.images={shapes / 'images.csv'}",
    )
    run_ok(train_cmd(2, shapes, tmp_path / "run", *args))
    assert (tmp_path / "run" / "checkpoint-00000003" / "COMPLETE").exists()


def test_image_only_training_leaves_temporal_layers_alone(shapes, tmp_path):
    """Images only on 2 processes: no temporal parameter gets a gradient, optimizer state or
    a change, as on one process."""
    from pixeldance.train.config import load_config
    from pixeldance.train.setup import build_components

    args = ["--max-steps", "2", "--checkpoint-every", "0"]
    args += sets(*ONE_BUCKET, "data.image_every=1", f"data.images={shapes / 'images.csv'}")
    run_ok(train_cmd(2, shapes, tmp_path / "run", *args))
    unet = checkpoint_tensors(tmp_path / "run", 2, "unet")
    optimizer = checkpoint_tensors(tmp_path / "run", 2, "optimizer")
    torch.manual_seed(load_config(ROOT / "configs" / "tiny.yaml").run.seed)
    start = build_components(load_config(ROOT / "configs" / "tiny.yaml")).unet.state_dict()
    temporal = [k for k in unet if ".temp_" in k]
    assert temporal and all(torch.equal(unet[k], start[k]) for k in temporal)
    assert not [k for k in optimizer if ".temp_" in k]
    assert any(not torch.equal(unet[k], start[k]) for k in unet if ".temp_" not in k)
