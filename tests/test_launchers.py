"""Launchers (issue 32 item 7): ``accelerate launch --multi_gpu --num_processes 2`` on CPU
(gloo) trains as torchrun does, bit for bit; ``accelerate launch --num_processes 2 --cpu`` runs
one process (accelerate's choice), and the run says so in one line."""

from __future__ import annotations

import sys

import pytest

from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.train.distributed import launch_mismatch
from train_runs import assert_same_checkpoint, free_port, run_ok, sets, train_cmd


@pytest.mark.parametrize(
    "command,world,says",
    [
        ("accelerate launch --num_processes 2 --cpu -m pixeldance.cli train", "", "asked for 2"),
        ("python -m torch.distributed.run --nproc_per_node=4 x.py", "", "asked for 4"),
        ("accelerate launch --multi_gpu --num_processes 2 x.py", "2", None),
        ("accelerate launch --num_processes 1 x.py", "", None),
        ("bash run.sh", "", None),
    ],
)
def test_a_launcher_asking_for_more_processes_than_run_is_named(monkeypatch, command, world, says):
    if world:
        monkeypatch.setenv("WORLD_SIZE", world)
    else:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    message = launch_mismatch(command.split())
    if says is None:
        assert message is None
    else:
        assert says in message and "--multi_gpu" in message and "\n" not in message


@pytest.mark.slow
@pytest.mark.multiprocess
def test_accelerate_launch_multi_gpu_on_cpu_matches_torchrun(tmp_path):
    data = write_dataset(tmp_path / "data", 6, seed=1, progress=False)
    args = ["--max-steps", "2", "--checkpoint-every", "0"]
    args += sets("data.image_every=0", "optim.grad_accum=2", "run.log_batches=true")
    args += sets("data.buckets=[{name: sq, height: 32, width: 32, frames: 4, batch_size: 1}]")
    torchrun = train_cmd(2, data, tmp_path / "torchrun", *args)
    run_ok(torchrun)
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    accelerate += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    accelerate += ["--dynamo_backend", "no", "--main_process_port", str(free_port())]
    cli = train_cmd(1, data, tmp_path / "accelerate", *args)[1:]  # "-m pixeldance.cli train ..."
    run_ok([*accelerate, *cli])
    assert (tmp_path / "accelerate" / "batches-rank1.jsonl").exists()
    assert_same_checkpoint(tmp_path / "torchrun", tmp_path / "accelerate", 2)
    single = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2"]
    single += ["--cpu", "--num_machines", "1", "--mixed_precision", "no"]
    single += ["--dynamo_backend", "no"]
    out = run_ok([*single, *train_cmd(1, data, tmp_path / "single", *args)[1:]])
    assert "asked for 2 processes but this run is 1 process" in out, out[-3000:]
    assert not (tmp_path / "single" / "batches-rank1.jsonl").exists()
