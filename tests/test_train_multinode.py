"""Two processes started as a launcher starts them, one per simulated node (issue 32, items
3-5): SIGTERM reaching one rank stops both at the same step; nodes whose output folders differ
are refused, never left to diverge; a run resumes on another process count with its global
batch, or is refused naming the numbers.

Run alone with ``python -m pytest -m multiprocess``.
"""

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ROOT, cli_env
from pixeldance.data.shapes_dataset import write_dataset
from train_runs import (
    assert_same_checkpoint,
    run_ok,
    run_ranks,
    sets,
    start_ranks,
    train_cmd,
    wait_ranks,
)

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

BUCKET = "data.buckets=[{name: square, height: 32, width: 32, frames: 4, batch_size: %d}]"
# one clip per process and micro-step; every checkpoint kept; what each step trained on logged
ARGS = ["--checkpoint-every", "2"]
ARGS += sets(BUCKET % 1, "run.log_batches=true", "run.keep_checkpoints=10")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_dataset(root, 8, seed=13, num_images=0, progress=False)
    return root


@pytest.fixture(scope="module")
def reference(shapes, tmp_path_factory) -> Path:
    """8 steps on 2 processes, uninterrupted, in one shared folder."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run_ok(train_cmd(2, shapes, out, "--max-steps", "8", *ARGS))
    return out


def node_cmds(shapes: Path, outs: list[Path], *args: str) -> list[list[str]]:
    """One ``pixeldance train`` per rank, each with its own output folder."""
    return [train_cmd(1, shapes, out, *ARGS, *args) for out in outs]


def batches(folder: Path) -> dict[int, tuple[list[str], float]]:
    """What each step trained on, over every rank and micro-step: (sorted captions, LR)."""
    steps: dict[int, tuple[list[str], float]] = {}
    for log in folder.glob("batches-rank*.jsonl"):
        for line in log.read_text().splitlines():
            r = json.loads(line)
            captions, _ = steps.get(r["step"], ([], r["lr"]))
            steps[r["step"]] = (sorted(captions + r["captions"]), r["lr"])
    return steps


def test_sigterm_to_one_rank_stops_both_at_the_same_step(shapes, reference, tmp_path):
    out = tmp_path / "run"
    logs = [tmp_path / "rank0.log", tmp_path / "rank1.log"]
    procs = start_ranks(node_cmds(shapes, [out, out], "--max-steps", "8"), logs)
    marker = out / "checkpoint-00000002" / "COMPLETE"
    deadline = time.time() + 300
    while not marker.exists():
        assert all(p.poll() is None for p in procs), logs[0].read_text()[-3000:]
        assert time.time() < deadline, "no checkpoint 2"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # a node being drained: rank 1 only
    assert wait_ranks(procs, 300) == [143, 143], logs[0].read_text()[-3000:]
    said = [re.search(r"stopped by signal 15 at step (\d+)", log.read_text()) for log in logs]
    assert all(said), [log.read_text()[-2000:] for log in logs]
    step = int(said[0].group(1))
    assert int(said[1].group(1)) == step and 2 <= step < 8
    assert (out / f"checkpoint-{step:08d}" / "COMPLETE").is_file()
    assert not list(out.glob(".tmp-*"))
    # resumed, it ends as the uninterrupted run does
    codes, outs = run_ranks(node_cmds(shapes, [out, out], "--max-steps", "8", "--resume"), tmp_path)
    assert codes == [0, 0], outs[0][-3000:]
    assert_same_checkpoint(reference, out, 8)


def test_nodes_with_separate_output_folders_are_refused_or_resume_together(
    shapes, reference, tmp_path
):
    """Rank 0 writes the checkpoints into node 0's folder; node 1's has none. Resuming is
    refused on both ranks with one line saying who sees what; with the checkpoint copied to
    node 1 they resume together and end as the uninterrupted run does."""
    a, b = tmp_path / "node0", tmp_path / "node1"
    codes, outs = run_ranks(node_cmds(shapes, [a, b], "--max-steps", "4"), tmp_path)
    assert codes == [0, 0], outs[0][-3000:]
    assert (a / "checkpoint-00000004" / "COMPLETE").is_file()
    assert not list(b.glob("checkpoint-*"))

    codes, outs = run_ranks(node_cmds(shapes, [a, b], "--max-steps", "8", "--resume"), tmp_path)
    assert codes == [1, 1], outs[0][-3000:]
    for out in outs:
        line = out.strip().splitlines()[-1]
        assert line.startswith("pixeldance train: error: the 2 processes do not agree"), line
        assert "rank 0" in line and "checkpoint-00000004 (step 4" in line, line
        assert "rank 1 (config " in line and f"no checkpoint in {b}" in line, line
    assert not (a / "checkpoint-00000006").exists()  # nothing trained

    shutil.copytree(a / "checkpoint-00000004", b / "checkpoint-00000004")
    codes, outs = run_ranks(node_cmds(shapes, [a, b], "--max-steps", "8", "--resume"), tmp_path)
    assert codes == [0, 0], outs[0][-3000:]
    assert_same_checkpoint(reference, a, 8)


def test_resume_on_another_process_count_keeps_the_global_batch(shapes, reference, tmp_path):
    """Checkpoint 4 of the 2-process run resumed on 1 process (accumulation 2), and that run's
    checkpoint 6 on 2 processes again with accumulation 2 asked (back to 1): every step trains
    on the clips and at the LR of the uninterrupted run. A micro batch that cannot make the global batch is
    refused in one line."""
    want = batches(reference)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copytree(reference / "checkpoint-00000004", one / "checkpoint-00000004")
    said = run_ok(train_cmd(1, shapes, one, *ARGS, "--max-steps", "6", "--resume"))
    assert "resuming on 1 processes with optim.grad_accum=2 keeps its global batch" in said
    got = batches(one)
    assert sorted(got) == [4, 5] and all(got[s] == want[s] for s in got)
    state = json.loads((one / "checkpoint-00000006" / "state.json").read_text())
    assert state["batch"]["world_size"] == 1 and state["batch"]["grad_accum"] == 2
    assert state["batch"]["global_batch"]["square"] == 2

    two = tmp_path / "two"
    two.mkdir()
    shutil.copytree(one / "checkpoint-00000006", two / "checkpoint-00000006")
    # the 1-process command line (accumulation 2) on 2 processes: accumulation back to 1
    again = [*ARGS, "--max-steps", "8", "--resume", *sets("optim.grad_accum=2")]
    said = run_ok(train_cmd(2, shapes, two, *again))
    assert "resuming on 2 processes with optim.grad_accum=1" in said
    got = batches(two)
    assert sorted(got) == [6, 7] and all(got[s] == want[s] for s in got)

    refused = subprocess.run(
        train_cmd(1, shapes, two, *ARGS, "--max-steps", "10", "--resume", *sets(BUCKET % 3)),
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    line = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert line.startswith("pixeldance train: error: cannot resume on 1 processes"), line
    assert "2 processes x micro batch 1 x optim.grad_accum 1 = global batch 2" in line, line
    assert not (two / "checkpoint-00000010").exists()
