"""Training from webdataset shards as a user runs it: on 1 and 2 processes, with 0 and 2
DataLoader workers, the same clips at every step (global batch 2: 1 process x batch 2 or
2 x 1), and a run SIGKILLed after a checkpoint resumes bit-identically, whatever the workers
before and after the kill (issue 32 item 1).

Run alone with ``python -m pytest -m multiprocess``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pixeldance.train.config import load_config
from pixeldance.train.stream import make_stream
from shard_sets import pattern, write_shards
from train_runs import (
    TINY,
    assert_same_checkpoint,
    free_port,
    run_killed_after,
    run_ok,
    sets,
)

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

N_SHARDS, STEPS = 4, 8


def buckets(batch_size: int) -> str:
    return (
        f"data.buckets=[{{name: square, height: 32, width: 32, frames: 4, batch_size: {batch_size}}},"
        f" {{name: landscape, height: 24, width: 40, frames: 4, batch_size: {batch_size}}}]"
    )


def shard_cmd(procs: int, data: str, out: Path, workers: int) -> list[str]:
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(procs)]
        launcher += ["--master_port", str(free_port())]
    args = ["--max-steps", str(STEPS), "--checkpoint-every", "4"]
    args += sets(
        buckets(2 // procs),  # global batch 2 on any process count
        "data.image_every=0",
        f"data.num_workers={workers}",
        "run.log_batches=true",
    )
    cli = ["-m", "pixeldance.cli", "train", "--config", str(TINY), "--data", data]
    return [*launcher, *cli, "--output-dir", str(out), *args]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("shards")
    write_shards(root, n_shards=N_SHARDS, per_shard=3)
    return pattern(root, N_SHARDS)


def captions_per_step(out: Path, procs: int) -> list[list[str]]:
    """What each step trained on, all processes in rank order (a resumed run's log holds its
    steps after the checkpoint twice; the first run's are kept)."""
    steps: dict[int, list[str]] = {}
    for rank in range(procs):
        seen = set()
        for line in (out / f"batches-rank{rank}.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record["step"] in seen:
                continue
            seen.add(record["step"])
            steps.setdefault(record["step"], []).extend(record["captions"])
    return [steps[k] for k in sorted(steps)]


def expected(shards: str) -> list[list[str]]:
    """The clips of each step, from the stream in this process (nothing trained)."""
    cfg = load_config(TINY, [f"data.shards={shards}", "data.image_every=0", buckets(2)])
    stream, _ = make_stream(cfg, 0)
    return [next(stream)[2].captions for _ in range(STEPS)]


@pytest.mark.parametrize("procs", [1, 2])
def test_shards_train_and_resume_bit_identical(shards, tmp_path, procs):
    """A whole run with 2 workers, and a run with 0 workers SIGKILLed after its checkpoint at
    step 4 and resumed with 2: the same clips at every step as the stream gives on one
    process, and bit-identical checkpoints (UNet, EMA, optimizer) at the end."""
    a, b = tmp_path / "a", tmp_path / "b"
    run_ok(shard_cmd(procs, shards, a, workers=2))
    assert captions_per_step(a, procs) == expected(shards)
    killed = shard_cmd(procs, shards, b, workers=0)
    assert run_killed_after(killed, b, 4), "finished before the kill"
    run_ok([*shard_cmd(procs, shards, b, workers=2), "--resume"])
    assert_same_checkpoint(a, b, STEPS)
    assert captions_per_step(b, procs) == captions_per_step(a, procs)
