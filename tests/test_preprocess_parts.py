"""``preprocess`` in parts (issue 32, item 2): 2 processes under torchrun, or jobs started apart
and merged, make the cache one process makes; a killed preprocess continues from its finished
parts; parts of another preprocess are never mixed in."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors import safe_open

from helpers import ROOT, cli_env
from pixeldance.cli import main
from pixeldance.data.shapes_dataset import write_dataset
from train_runs import TINY, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_dataset(root, 8, seed=17, num_images=4, progress=False)
    return root


def args(shapes: Path, out: Path, *extra: str) -> list[str]:
    return [
        "preprocess", "--config", str(TINY), "--data", str(shapes / "manifest.csv"),
        "--images", str(shapes / "images.csv"), "--out", str(out), "--part-size", "1", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def one_process(shapes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "cache"
    assert main(args(shapes, out, "--device", "cpu")) == 0
    return out


def assert_same_cache(a: Path, b: Path) -> None:
    """The same index, shards, captions and tensors, bit for bit."""
    index = json.loads((a / "index.json").read_text())
    assert index == json.loads((b / "index.json").read_text())
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in [s["file"] for s in index["shards"]] + ["empty_text.safetensors"]:
        with safe_open(a / name, "pt") as x, safe_open(b / name, "pt") as y:
            assert x.metadata() == y.metadata(), name
            assert set(x.keys()) == set(y.keys()), name
            for key in x.keys():
                assert x.get_tensor(key).equal(y.get_tensor(key)), (name, key)


def cli(argv: list[str], launcher: list[str] | None = None, timeout: float = 300):
    cmd = [sys.executable, *(launcher or []), "-m", "pixeldance.cli", *argv]
    return subprocess.run(
        cmd, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def test_one_process_cache_holds_every_item(one_process):
    index = json.loads((one_process / "index.json").read_text())
    counts = {"video": 0, "image": 0}
    for s in index["shards"]:
        counts[s["kind"]] += s["count"]
    assert counts == {"video": 8, "image": 4}
    assert not (one_process.parent / "cache.preprocess-work").exists()


@pytest.mark.multiprocess
def test_two_processes_make_the_cache_one_process_makes(shapes, one_process, tmp_path):
    out = tmp_path / "cache"
    torchrun = ["-m", "torch.distributed.run", "--nproc_per_node", "2"]
    torchrun += ["--master_port", str(free_port())]
    done = cli(args(shapes, out, "--workers", "2"), torchrun)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert_same_cache(one_process, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no work folder left


def test_jobs_started_apart_are_merged(shapes, one_process, tmp_path):
    out = tmp_path / "cache"
    work = tmp_path / "cache.preprocess-work"
    assert main(args(shapes, out, "--rank", "1", "--world-size", "2")) == 0
    assert not out.exists() and (work / "plan.json").is_file()
    # merging before every job is done is refused, naming what is missing
    assert main(["preprocess", "--merge", "--out", str(out)]) == 2
    assert not out.exists()
    # parts of another preprocess are not mixed in
    other = args(shapes, out, "--rank", "0", "--world-size", "2")
    other[other.index("--part-size") + 1] = "4"
    assert main(other) == 1
    assert main(args(shapes, out, "--rank", "0", "--world-size", "2")) == 0
    assert main(["preprocess", "--merge", "--out", str(out)]) == 0
    assert_same_cache(one_process, out)
    assert not work.exists()


def test_merge_refusal_says_which_parts_are_missing(shapes, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(args(shapes, out, "--rank", "0", "--world-size", "2")) == 0
    capsys.readouterr()
    assert main(["preprocess", "--merge", "--out", str(out)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "6 of 12 parts are not done yet (e.g. part-000001" in line, line


def test_a_killed_preprocess_continues_from_its_finished_parts(shapes, one_process, tmp_path):
    out = tmp_path / "cache"
    work = tmp_path / "cache.preprocess-work"
    cmd = [sys.executable, "-m", "pixeldance.cli", *args(shapes, out)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not (work / "part-000002" / "part.json").exists():
        assert proc.poll() is None and time.time() < deadline, "ended before part 2"
        time.sleep(0.02)
    psutil.Process(proc.pid).send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done = len(list(work.glob("part-*")))
    assert 3 <= done < 12
    again = cli(args(shapes, out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming: {done} of 12 parts already done" in again.stderr
    left = 12 - done
    assert f"| {left}/{left} [" in again.stderr  # only the parts left were encoded
    assert_same_cache(one_process, out)
    assert not work.exists()
