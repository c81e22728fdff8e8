"""Every command stops on SIGTERM (exit 143) and SIGINT (exit 130) at any phase, within a few
seconds, and leaves nothing partial: no temporary folder, no half-written output.

Each case starts the command, waits until it has reached a phase (a file appears, a line is
printed), sends the signal, and then lists the folder."""

import signal
from pathlib import Path

import pytest

from helpers import ROOT
from pixeldance.folders import shipped_model_path
from signal_runs import stop

pytestmark = pytest.mark.slow


def run_until(argv, cwd: Path, ready, sig: int, timeout: float = 180.0):
    """Start ``pixeldance ARGV`` in ``cwd``; when ``ready(stderr_text, pid)`` holds, send ``sig``.
    Its stderr goes beside ``cwd``, so ``cwd`` holds only what the command leaves. Returns
    (exit code, stderr, seconds from the signal to the exit)."""
    log = cwd / ".." / f"{cwd.name}.stderr"
    return stop(argv, cwd, ready, [sig], timeout=timeout, log=log)


def hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def appears(pattern: str, where: Path):
    return lambda *_: any(where.glob(pattern))


def loading_torch(_text: str, pid: int) -> bool:
    """The command has started its work: torch (imported only inside commands) is mapping its
    libraries into the process."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


EXPECTED = {signal.SIGTERM: 143, signal.SIGINT: 130}
SIGNALS = [signal.SIGTERM, signal.SIGINT]


@pytest.mark.parametrize("sig", SIGNALS, ids=["term", "int"])
@pytest.mark.parametrize("phase", ["writing clips", "writing stills"])
def test_make_shapes_stops_and_leaves_no_half_dataset(tmp_path, sig, phase):
    work = tmp_path / "w"
    work.mkdir()
    ready = {
        "writing clips": lambda *_: len(list(work.glob(".shapes.*/videos/*/*.mp4"))) >= 2,
        "writing stills": appears(".shapes.*/images/*.png", work),
    }[phase]
    argv = ["make-shapes", "--out", "shapes", "--num", "40", "--images", "400", "--workers", "2"]
    code, err, took = run_until(argv, work, ready, sig)
    assert code == EXPECTED[sig], err[-2000:]
    assert took < 10
    assert list(work.iterdir()) == [], "a partial dataset was left"
    # the same --out is accepted afterwards (it does not exist)
    assert not (work / "shapes").exists()


@pytest.mark.parametrize("sig", SIGNALS, ids=["term", "int"])
@pytest.mark.parametrize("phase", ["loading", "generating"])
@pytest.mark.parametrize("out", ["clip.mp4", "frames"])
def test_generate_stops_and_leaves_no_output(tmp_path, sig, phase, out):
    work = tmp_path / "w"
    work.mkdir()
    ready = {
        "loading": loading_torch,
        "generating": lambda text, _: "%|" in text,  # the progress bar has started
    }[phase]
    argv = ["generate", "--prompt", "a red circle moves up", "--steps", "400", "--out", out]
    code, err, took = run_until(argv, work, ready, sig)
    assert code == EXPECTED[sig], err[-2000:]
    assert "Traceback" not in err
    assert took < 10
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("sig", SIGNALS, ids=["term", "int"])
def test_export_stops_and_leaves_no_temporary_folder(tmp_path, sig):
    import shutil

    work = tmp_path / "w"
    work.mkdir()
    source = tmp_path / "source"  # a pipeline with a large extra file: the copy takes a while
    shutil.copytree(shipped_model_path(), source)
    with open(source / "unet" / "padding.dat", "wb") as f:
        f.truncate(1 << 30)
    argv = ["export", str(source), "--out", "exported", "--full-precision"]
    code, err, took = run_until(argv, work, appears(".exported.*", work), sig)
    if code == 0:  # the copy finished before the signal landed: a complete folder, no temporary
        assert (work / "exported" / "model_index.json").is_file()
        assert hidden(work) == []
        return
    assert code == EXPECTED[sig], err[-2000:]
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("sig", SIGNALS, ids=["term", "int"])
def test_preprocess_stops_and_leaves_no_partial_cache(tmp_path, sig):
    data = ROOT.parent / "shared" / "data" / "real" / "videos"
    if not data.is_dir():
        pytest.skip("the shared real videos are not beside the repository")
    work = tmp_path / "w"
    work.mkdir()
    rows = "".join(f"{v},a clip\n" for v in sorted(data.glob("*.mp4")) for _ in range(20))
    (tmp_path / "m.csv").write_text("path,caption\n" + rows)
    argv = ["preprocess", "--config", str(ROOT / "configs" / "tiny.yaml"),
            "--data", str(tmp_path / "m.csv"), "--out", "cache"]  # fmt: skip
    # a part is being encoded (the first of 256 items, not finished): nothing to continue from
    code, err, took = run_until(argv, work, appears("cache.preprocess-work/.part-*", work), sig)
    assert code == EXPECTED[sig], err[-2000:]
    assert took < 10
    assert list(work.iterdir()) == []
