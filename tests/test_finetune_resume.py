"""LoRA runs resume exactly: SIGKILL after a checkpoint, --resume, and the final checkpoint is
bit-identical (base weights, adapters, EMA, optimizer) to the uninterrupted run's, on one
process and on two gloo processes (DDP with image mixing, accumulation, bf16 autocast and
gradient checkpointing; FSDP2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixeldance.data.shapes_dataset import write_dataset
from train_runs import assert_same_checkpoint, run_killed_after, run_ok, sets, train_cmd

pytestmark = pytest.mark.slow

ONE_BUCKET = (
    "data.buckets=[{name: square, height: 32, width: 32, frames: 4, batch_size: 1}]",
    "data.image_batch_size=1",
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_dataset(root, 8, seed=11, num_images=8, progress=False)
    return root


@pytest.fixture(scope="module")
def base(shapes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "run"
    run_ok(train_cmd(1, shapes, out, "--max-steps", "1", *sets(*ONE_BUCKET)))
    return out / "pipeline"


def _lora_args(shapes: Path, base: Path, *extra: str) -> list[str]:
    return [
        "--max-steps", "6", "--checkpoint-every", "3",
        *sets(
            *ONE_BUCKET, "model.init=pipeline", f"model.pretrained={base}",
            "optim.trainable=lora", "optim.lora.rank=4", "optim.lora.dropout=0.1",
            f"data.images={shapes / 'images.csv'}", "data.image_every=2", *extra,
        ),
    ]  # fmt: skip


def _resume_matches(procs: int, shapes: Path, base: Path, tmp_path: Path, *extra: str) -> None:
    args = _lora_args(shapes, base, *extra)
    a, b = tmp_path / "a", tmp_path / "b"
    run_ok(train_cmd(procs, shapes, a, *args))
    assert run_killed_after(train_cmd(procs, shapes, b, *args), b, 3), "finished before the kill"
    run_ok(train_cmd(procs, shapes, b, *args, "--resume"))
    assert_same_checkpoint(a, b, 6)
    assert (b / "adapter" / "adapter_model.safetensors").is_file()


def test_lora_resume_one_process(shapes, base, tmp_path):
    _resume_matches(1, shapes, base, tmp_path, "optim.grad_accum=2")


@pytest.mark.multiprocess
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_lora_resume_two_processes(shapes, base, tmp_path, fsdp):
    mixed = ("optim.grad_accum=2", "optim.mixed_precision=bf16")
    _resume_matches(
        2, shapes, base, tmp_path, *mixed, "optim.gradient_checkpointing=true", f"optim.fsdp={fsdp}"
    )
