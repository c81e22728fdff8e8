"""``train`` stops on SIGTERM (exit 143) and SIGINT (exit 130) at every phase: while the run is
being built, while it waits for data that never comes (``blocked_data.py``: the stream stalls
in a read after N micro-steps), and while it steps. It saves its state only if a step trained
since the last checkpoint; a second signal stops at once, saving nothing."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixeldance.data.shapes_dataset import write_dataset
from signal_runs import stop
from test_signals import EXPECTED
from train_runs import TINY, sets

pytestmark = pytest.mark.slow

ONE_BUCKET = "data.buckets=[{name: square, height: 32, width: 32, frames: 4, batch_size: 1}]"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_dataset(root, 6, seed=5, num_images=0, progress=False)
    return root


def train_args(shapes: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--config", str(TINY), "--data", str(shapes / "manifest.csv"),
        "--output-dir", str(out), *sets(ONE_BUCKET), *extra,
    ]  # fmt: skip


def blocked(tmp_path: Path):
    return lambda *_: (tmp_path / "blocked").exists()


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob(".*")) if out.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_stops_while_the_run_is_built(shapes, tmp_path, sig):
    """Signalled while the text encoder loads (transformers' "Loading weights" bar), inside
    train() before its first step."""
    out = tmp_path / "run"
    building = lambda text, _: "Loading weights" in text  # noqa: E731
    code, err, took = stop(train_args(shapes, out), tmp_path, building, [sig])
    assert code == EXPECTED[sig], err[-2000:]
    assert "Traceback" not in err and took < 30
    assert not out.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_stops_while_waiting_for_data_before_any_step(shapes, tmp_path, sig):
    """The data never comes: the stop waits its grace (stopping.GRACE_S) for it, then stops;
    nothing trained, so nothing is saved, not even the run folder."""
    out = tmp_path / "run"
    argv = train_args(shapes, out, "--max-steps", "4")
    code, err, took = stop(argv, tmp_path, blocked(tmp_path), [sig], block_after=0)
    assert code == EXPECTED[sig], err[-2000:]
    assert "Traceback" not in err and took < 40
    assert not out.exists()


def test_stop_while_waiting_for_data_saves_the_steps_done(shapes, tmp_path):
    """Two steps trained, then the data stalls: SIGTERM saves step 2 and exits 143."""
    out = tmp_path / "run"
    argv = train_args(shapes, out, "--max-steps", "8", "--checkpoint-every", "0")
    code, err, _ = stop(argv, tmp_path, blocked(tmp_path), [signal.SIGTERM], block_after=2)
    assert code == 143, err[-2000:]
    assert "stopped between steps; step 2 saved" in err
    assert (out / "checkpoint-00000002" / "COMPLETE").is_file()
    assert leftovers(out) == []


def test_a_second_signal_stops_at_once_and_saves_nothing(shapes, tmp_path):
    out = tmp_path / "run"
    argv = train_args(shapes, out, "--max-steps", "8", "--checkpoint-every", "0")
    sigs = [signal.SIGINT, signal.SIGINT]
    code, err, _ = stop(argv, tmp_path, blocked(tmp_path), sigs, block_after=2)
    assert code == 130, err[-2000:]
    assert "Traceback" not in err
    assert not list(out.glob("checkpoint-*")), "a second Ctrl-C saved anyway"


def test_stops_while_stepping_at_the_next_step_with_a_checkpoint(shapes, tmp_path):
    out = tmp_path / "run"
    argv = train_args(shapes, out, "--max-steps", "200", "--checkpoint-every", "2")
    ready = lambda *_: (out / "checkpoint-00000002" / "COMPLETE").exists()  # noqa: E731
    code, err, took = stop(argv, tmp_path, ready, [signal.SIGINT])
    assert code == 130, err[-2000:]
    assert "Traceback" not in err and took < 30
    import re

    found = re.search(r"stopped by signal 2 at step (\d+); (.*)", err)
    assert found, err[-2000:]
    step = int(found.group(1))
    assert 2 <= step < 200
    assert (out / f"checkpoint-{step:08d}" / "COMPLETE").is_file()  # saved now or at step 2
    assert ("checkpoint saved" in found.group(2)) == (step > 2)
    assert leftovers(out) == []


def test_sigterm_to_the_process_group_stops_a_run_with_dataloader_workers(shapes, tmp_path):
    """The signal also kills the DataLoader workers: the failed read is the stop, not an
    error; the step reached is saved."""
    out = tmp_path / "run"
    argv = train_args(shapes, out, "--max-steps", "200", "--checkpoint-every", "2")
    argv += sets("data.num_workers=2")
    ready = lambda *_: (out / "checkpoint-00000002" / "COMPLETE").exists()  # noqa: E731
    code, err, took = stop(argv, tmp_path, ready, [signal.SIGTERM], group=True)
    assert code == 143, err[-2000:]
    assert "Traceback" not in err and "error" not in err.splitlines()[-1], err[-2000:]
    assert took < 30
    steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert steps and steps[-1] >= 2 and leftovers(out) == []


def test_a_rank_waiting_for_its_peers_is_ended_by_the_watchdog(shapes, tmp_path):
    """Rank 0 of 2 whose peer never comes waits inside the rendezvous, where no Python handler
    runs: the watchdog ends it (stopping.GRACE_S + HARD_S after the signal), saving nothing."""
    import psutil

    from pixeldance.train.stopping import GRACE_S, HARD_S
    from train_runs import free_port, rank_env

    port = free_port()
    out = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixeldance.cli", *train_args(shapes, out)],
            cwd=tmp_path, env=rank_env(0, 2, port), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        listening = False
        while not listening:  # rank 0 serves the rendezvous store and waits for rank 1
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "rank 0 never listened"
            time.sleep(0.1)
            conns = psutil.Process(proc.pid).net_connections()
            listening = any(c.status == "LISTEN" and c.laddr.port == port for c in conns)
        time.sleep(1)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
    assert code == 143, log.read_text()[-2000:]
    assert "no response to signal 15 while building the run" in log.read_text()
    assert GRACE_S + HARD_S - 1 < took < GRACE_S + HARD_S + 20
    assert not out.exists()
