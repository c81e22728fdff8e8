"""More bad inputs, beside tests/test_refusals.py: the training config's one check (every key,
before any work), YAML errors as one line with file and line, manifests refused before work,
eval's network files, --is-splits, output places, the demo's --host. Each case runs in a fresh
copy of its inputs: exit code 2, one line naming what to change, no traceback, nothing written.
"""

import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from evaluation_helpers import TinyImageNet, TinyVideoNet, save_torchscript
from helpers import ROOT, tree
from pixeldance.cli import main
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.folders import shipped_model_path


def prepare(d: Path) -> None:
    from safetensors.torch import save_file

    shutil.copy(ROOT / "configs" / "tiny.yaml", d / "tiny.yaml")
    write_dataset(d / "shapes", 2, seed=1, num_images=0, progress=False)  # 108-frame clips
    (d / "empty.csv").write_text("path,caption\n")
    (d / "nocols.csv").write_text("a,b\n1,2\n")
    (d / "latin.csv").write_bytes(b"path,caption\nx.mp4,caf\xe9\n")
    (d / "latin.yaml").write_bytes(b"run:\n  sample_prompt: caf\xe9\n")
    (d / "bad.yaml").write_text("model: [\n")
    (d / "lr.yaml").write_text("optim:\n  lr: -1\n")
    (d / "afile").write_text("x")
    (d / "adir").mkdir()
    os.symlink("loop", d / "loop")
    Image.new("RGB", (48, 48)).save(d / "img.png")
    (d / "notes.txt").write_text("not an image")
    (d / "firsts.csv").write_text("prompt,first_frame\na red circle,notes.txt\n")
    save_torchscript(TinyVideoNet(), d / "i3d.pt")
    save_torchscript(TinyImageNet(), d / "inception.pt")
    (d / "empty.pt").write_bytes(b"")
    (d / "corrupt.pt").write_bytes((d / "i3d.pt").read_bytes()[:3000])
    save_file({"x": torch.zeros(2)}, str(d / "wrong.safetensors"))


T = ["train", "--config", "tiny.yaml", "--data", "shapes/manifest.csv", "--output-dir", "run"]
EV = ["eval", "--videos", "shapes/manifest.csv", "--references", "shapes/videos",
      "--cache-dir", "cache", "--trust-weights", "--device", "cpu", "--out", "ev"]  # fmt: skip
LONG_STAGE = "data.stages=[{steps: 2, buckets: [{name: long, height: 32, width: 32, frames: 200}]}]"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is there")
CASES = [
    # train: the config, one key at a time, before anything is built
    (T + ["--set", "optim.max_steps=0"], "optim.max_steps must be at least 1, got 0"),
    (T + ["--set", "run.log_every=-1"], "run.log_every must be at least 1"),
    (T + ["--set", "run.checkpoint_every=-1"], "run.checkpoint_every must be at least 1"),
    (T + ["--set", "run.sample_every=-5"], "run.sample_every must be at least 1"),
    (T + ["--set", "optim.lr=[1, 2]"], "optim.lr must be a number, got [1, 2]"),
    (T + ["--set", "optim.lr=-1"], "optim.lr must be greater than 0"),
    (T + ["--set", "optim.lr=.nan"], "optim.lr must be a number, got nan"),
    (T + ["--set", "optim.grad_accum=0"], "optim.grad_accum must be at least 1"),
    (T + ["--set", "optim.ema_decay=1"], "optim.ema_decay must be at least 0 and below 1"),
    (T + ["--set", "optim.lr_schedule=bogus"], "optim.lr_schedule must be one of"),
    (T + ["--set", "instructions.text_drop_prob=2"], "instructions.text_drop_prob must be in"),
    (T + ["--set", "instructions.last_frame_drop_prob=[1]"], "last_frame_drop_prob must be a num"),
    (T + ["--set", "instructions.noise_timestep=5000"], "instructions.noise_timestep must be"),
    (T + ["--set", "data.fps=0"], "data.fps must be from 0.1 to 120"),
    (T + ["--set", "data.buckets=[{name: a, height: 30, width: 30, frames: 4}]"],
     "data.buckets[0].height is 30: it must be a multiple of 8"),
    (T + ["--set", "data.buckets=[{name: a, height: 32, width: 32, frames: 500}]"],
     "data.buckets[0].frames must be from 1 to 256"),
    (T + ["--set", "data.buckets=[{name: a, height: 32, width: 32, frames: 1}]"],
     "data.buckets[0].frames must be at least 2"),
    (T + ["--set", LONG_STAGE], "data.stages[0].buckets[0].frames is 200 but the clips of"),
    (T + ["--set", "model.unet.foo=1"], "model.unet has unknown keys ['foo']"),
    (T + ["--set", "model.unet.norm_num_groups=7"], "model.unet.norm_num_groups (7) must divide"),
    (T + ["--set", "model.init=bogus"], "model.init must be one of"),
    (T + ["--set", "model.vae=nowhere"], "model.vae is 'codec' or an autoencoder folder"),
    (T + ["--set", "model.text_encoder=nowhere"], "model.text_encoder is a text encoder folder"),
    (T + ["--set", "run.trackers=[x]"], "run.trackers must be a list of trackers"),
    (T + ["--set", "=3"], "'' is not a config key"),
    # YAML and config files: one line with the file and the line
    (T + ["--set", "optim.lr=["], "--set optim.lr=[: the value is not valid YAML"),
    (["train", "--config", "bad.yaml", "--data", "shapes/manifest.csv"],
     "config bad.yaml:2: not valid YAML"),
    (["train", "--config", "latin.yaml", "--data", "shapes/manifest.csv"],
     "config latin.yaml is not UTF-8"),
    (["train", "--config", "afile", "--data", "shapes/manifest.csv"], "afile must hold sections"),
    (["preprocess", "--config", "bad.yaml", "--data", "shapes/manifest.csv", "--out", "c"],
     "config bad.yaml:2: not valid YAML"),
    (["preprocess", "--config", "lr.yaml", "--data", "shapes/manifest.csv", "--out", "c"],
     "optim.lr must be greater than 0"),
    (["preprocess", "--config", "tiny.yaml", "--data", "shapes/manifest.csv", "--out", "c",
      "--set", LONG_STAGE], "are too short for it"),
    (["export", str(shipped_model_path()), "--out", "e", "--config", "bad.yaml"],
     "config bad.yaml:2: not valid YAML"),
    (["export", str(shipped_model_path()), "--out", "e", "--config", "lr.yaml"],
     "optim.lr must be greater than 0"),
    # manifests: refused before work, naming the file
    (["train", "--data", "empty.csv", "--output-dir", "run"], "manifest empty.csv has no rows"),
    (["train", "--data", "nocols.csv", "--output-dir", "run"], "nocols.csv needs a path column"),
    (["train", "--data", "latin.csv", "--output-dir", "run"], "latin.csv is not UTF-8 text"),
    (["check-data", "empty.csv"], "manifest empty.csv has no rows"),
    (["check-data", "nocols.csv"], "nocols.csv needs a path column"),
    (["check-data", "latin.csv"], "manifest latin.csv is not UTF-8 text"),
    (["preprocess", "--data", "latin.csv", "--out", "c"], "manifest latin.csv is not UTF-8"),
    # output places
    (T[:-1] + ["loop"], "loop is a broken symbolic link or a symlink loop"),
    (T[:-1] + ["afile/run"], "--output-dir) afile/run cannot be written: afile is a file"),
    (EV[:-1] + ["afile/ev"], "--out afile/ev cannot be written: afile is a file, not a folder"),
    (["preprocess", "--data", "shapes/manifest.csv", "--out", "loop/c"], "cannot be resolved"),
    # eval: network files, devices, IS splits
    (EV + ["--metrics", "fvd", "--i3d", "empty.pt"], "empty.pt is empty (0 bytes)"),
    (EV + ["--metrics", "fvd", "--i3d", "corrupt.pt"], "corrupt.pt is not a TorchScript file"),
    (EV + ["--metrics", "fvd", "--i3d", "wrong.safetensors"], "is read from TorchScript only"),
    (EV + ["--metrics", "fvd", "--i3d", "adir"], "--i3d adir is a folder, not the file"),
    (EV + ["--metrics", "fvd", "--i3d", "inception.pt"], "inception.pt is not the Kinetics-400"),
    (EV + ["--metrics", "is", "--inception", "i3d.pt"], "i3d.pt is not the Inception network"),
    (EV + ["--metrics", "is", "--inception", "wrong.safetensors"],
     "wrong.safetensors is not pytorch-fid's Inception weights"),
    (EV + ["--metrics", "is", "--inception", "inception.pt", "--is-splits", "1000"],
     "--is-splits 1000 is more than the 32 frames (2 clips x 16)"),
    (EV[:-4] + ["--device", "banana", "--out", "ev"], "--device: device 'banana' is unknown"),
    pytest.param(EV[:-4] + ["--device", "cuda", "--out", "ev"], "device cuda is not available",
                 marks=NO_CUDA),
    (["eval", "--manifest", "firsts.csv", "--out", "ev", "--metrics", "flicker", "--steps", "2",
      "--device", "cpu"], "not a readable image"),  # a refused eval leaves no generation.json
    (["eval", "--videos", "latin.csv", "--out", "ev"], "manifest latin.csv is not UTF-8 text"),
    # data: counts the disk or the machine cannot hold, an image list that is not one
    (["make-shapes", "--out", "m", "--num", str(10**12)], "not enough free space for m"),
    (["make-shapes", "--out", "m", "--num", "2", "--workers", "100000"], "--workers must be from"),
    (["check-data", "shapes/manifest.csv", "--workers", "100000"], "--workers must be from 1"),
    (T + ["--set", "data.images=afile"], "data.images: manifest afile has no rows"),
    (["preprocess", "--config", "tiny.yaml", "--data", "shapes/manifest.csv", "--out", "c",
      "--images", "afile"], "manifest afile has no rows"),
    # generate, the demo, argument errors
    (["generate", "--prompt", "", "--out", "o.mp4"], "--prompt is empty and there is no"),
    (["generate", "--prompt", "x", "--scheduler", "bogus", "--out", "o.mp4"], "invalid choice"),
    (["demo", "--host", "999.1.1.1"], "--host '999.1.1.1' is not an address"),
    (["demo", "--host", "192.0.2.1"], "--host 192.0.2.1 is not an address of this machine"),
]  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    prepare(d)
    return d


def _id(i: int, case) -> str:
    argv = case.values[0] if hasattr(case, "values") else case[0]
    return f"{i}-{argv[0]}"


@pytest.mark.parametrize("argv, message", CASES, ids=[_id(i, c) for i, c in enumerate(CASES)])
def test_bad_input_is_refused_in_one_line(argv, message, inputs, tmp_path, monkeypatch, capsys):
    work = tmp_path / "w"
    shutil.copytree(inputs, work, symlinks=True)
    monkeypatch.chdir(work)
    before = tree(work)
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse
        code = exit.code
    err = capsys.readouterr().err
    lines = [
        line
        for line in err.strip().splitlines()
        if not line.startswith("warning:") and "it/s]" not in line  # a progress bar
    ]
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith(f"pixeldance {argv[0]}: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert tree(work) == before, "a refused command left files behind"


def test_a_fifo_given_as_a_config_or_a_storyboard_is_refused_without_waiting(
    inputs, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    os.mkfifo("pipe")
    for argv, message in (
        (["train", "--config", "pipe", "--data", str(inputs / "shapes/manifest.csv")], "pipe"),
        (["check-data", "pipe"], "not a regular file"),
        (["story", "pipe", "--out", "o.mp4"], "not a regular file"),
    ):
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_a_manifest_that_cannot_be_indexed_leaves_no_lock_and_names_itself(inputs, tmp_path):
    from pixeldance.data.manifest import read_video_records

    for name in ("empty.csv", "nocols.csv", "latin.csv"):
        shutil.copy(inputs / name, tmp_path / name)
        with pytest.raises(ValueError, match=name):
            read_video_records(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv", "latin.csv", "nocols.csv"]


def test_the_shipped_configs_pass_the_check():
    from pixeldance.train.config import load_config
    from pixeldance.train.config_check import check_ranges, check_types, check_unet

    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        cfg = load_config(path)
        check_types(cfg)
        check_ranges(cfg)
        check_unet(cfg)


def test_intervals_of_zero_mean_never(monkeypatch):
    """run.log_every (and checkpoint_every, sample_every) 0: the step is not logged; the
    last step is."""
    from pixeldance.train import loop

    logged = []
    monkeypatch.setattr(loop, "log_step", lambda run, loss, bar: logged.append(run.step))
    r = SimpleNamespace(log_every=0, checkpoint_every=0, sample_every=0)
    cfg = SimpleNamespace(run=r, optim=SimpleNamespace(max_steps=10))
    for step in (1, 5, 10):
        loop.after_step(SimpleNamespace(cfg=cfg, step=step), 0.5, None)
    assert logged == [10]


def test_any_64_bit_seed_draws_a_step():
    from pixeldance.train.step import step_generator

    g = step_generator(2**64 - 1, 7, 3, torch.device("cpu"))
    assert torch.rand(1, generator=g).item() >= 0
    assert step_generator(5, 7, 3, "cpu").initial_seed() == (5 * 1_000_003 + 7) * 1_009 + 3


def test_bad_files_are_counted_once_however_often_tried(tmp_path):
    from pixeldance.data.buckets import Bucket
    from pixeldance.data.datasets import BadDataCounter, VideoClipDataset
    from pixeldance.data.manifest import Record

    ds = VideoClipDataset([Record(str(tmp_path / "missing.mp4"), "x")], [Bucket("a", 8, 8, 2)])
    sample = ds[(0, 0)]  # the one record, tried 1 + max_retries times
    assert sample.pixels is None and len(sample.bad) == 1
    counter = BadDataCounter()
    counter.merge(sample.bad)
    counter.merge(ds[(1, 0)].bad)  # the same file again, for another sample
    assert counter.total == 1


def test_a_run_whose_clips_are_all_too_short_says_so():
    from pixeldance.train.guard import Counters

    counters = Counters(nonfinite=5)
    counters.count_bad([("a.mp4", "ClipTooShort"), ("b.mp4", "ClipTooShort")])
    message = counters.nothing_learnt("m.csv", 1e-4)
    assert "the clips are too short for the bucket's frames" in message
    counters.count_bad([("c.mp4", "VideoError")])
    assert "check-data m.csv" in counters.nothing_learnt("m.csv", 1e-4)


def test_the_demo_port_in_use_is_refused_before_the_model_loads(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 2
    assert f"--port {port} is in use on 127.0.0.1" in capsys.readouterr().err
