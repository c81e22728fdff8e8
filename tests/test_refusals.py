"""A table of bad inputs across the commands and the demo's handler: each is refused with the
documented exit code, one line naming what to change, no traceback, and nothing left behind.

Each case runs in a fresh folder holding the inputs it needs; the folder is listed before and
after, so a refused command that wrote anything fails here.
"""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from helpers import ROOT, tree
from pixeldance.cli import main
from pixeldance.folders import shipped_model_path

RED = "a red circle moves to the right"


def prepare(d: Path) -> None:
    """Inputs the cases refer to, by relative path."""
    Image.new("RGB", (48, 48), (200, 40, 40)).save(d / "img.png")
    (d / "notes.txt").write_text("not an image")
    (d / "afile").write_text("x")
    (d / "adir").mkdir()
    (d / "frames").mkdir()
    (d / "clip.mp4").mkdir()  # a folder named like a video
    (d / "clip.gif").write_bytes(b"GIF89a")  # a user's file
    (d / "stills.csv").write_text("path,caption\nimg.png,a red square\nimg.png,a blue one\n")
    (d / "videos.csv").write_text("path,caption\nmissing.mp4,a red circle\n")
    (d / "full").mkdir()
    (d / "full" / "keep.txt").write_text("x")
    (d / "bad.yaml").write_text("shots: [unclosed\n")
    (d / "story_list.yaml").write_text("first_frame: [1, 2]\nshots:\n  - prompt: a red circle\n")
    (d / "story_empty.yaml").write_text("shots: []\n")
    (d / "story_tau.yaml").write_text("shots:\n  - prompt: a red circle\n    tau: 99\n")
    (d / "story_last.yaml").write_text("shots:\n  - {prompt: x, last_frame: nowhere.png}\n")
    (d / "story_keys.yaml").write_text("shots:\n  - {prompt: x, tua: 3}\n")
    (d / "story_frames.yaml").write_text("shots:\n  - {prompt: x, num_frames: 100000}\n")
    (d / "story_257.yaml").write_text("shots:\n  - {prompt: x, num_frames: 257}\n")
    (d / "bad.JSON").write_text("{shots: [")
    # broken copies of the shipped model
    for name in ("m_index", "m_trunc", "m_bin", "m_gen", "m_nounet", "m_huge"):
        shutil.copytree(shipped_model_path(), d / name)
    (d / "m_index" / "model_index.json").write_text("{not json")
    weights = d / "m_trunc" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    (d / "m_bin" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (d / "m_bin" / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    (d / "m_gen" / "generation.json").write_text(json.dumps({"tau": -2}))
    shutil.rmtree(d / "m_nounet" / "unet")
    claim_a_huge_tensor(d / "m_huge" / "unet" / "diffusion_pytorch_model.safetensors")


def claim_a_huge_tensor(weights: Path) -> None:
    """Rewrite a safetensors header so its first tensor claims [2**20, 2**20] elements."""
    import struct

    data = weights.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    first = next(k for k in header if k != "__metadata__")
    header[first]["shape"] = [2**20, 2**20]
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


G = ["generate", "--prompt", RED]
CASES = [
    # generate: the output
    (G + ["--out", "clip.mp4"], "--out", "clip.mp4 is a folder"),
    (G + ["--out", "full"], "--out", "full exists and holds files pixeldance did not write"),
    (G + ["--out", "clip.gif"], "--out", "clip.gif exists; pass --overwrite"),
    (G + ["--out", ".mp4"], "--out", "hidden file"),
    (G + ["--out", "afile/clip.mp4"], "--out", "afile is a file, not a folder"),
    (G + ["--out", "clip.avi"], "--out", "unknown output type '.avi'"),
    # generate: the images and the prompt
    (G + ["--first-frame", "missing.png", "--out", "o.mp4"], "--first-frame", "image not found"),
    (G + ["--first-frame", "notes.txt", "--out", "o.mp4"], "--first-frame", "not a readable image"),
    (G + ["--last-frame", "adir", "--out", "o.mp4"], "--last-frame", "got a folder"),
    (["generate", "--prompt", "a red \udcff circle", "--out", "o.mp4"], "--prompt", "UTF-8"),
    # generate: settings
    (G + ["--tau", "99", "--steps", "10", "--out", "o.mp4"], "--tau", "between 0 and the steps"),
    (G + ["--steps", "0", "--out", "o.mp4"], "--steps", "from 1 to 1000"),
    (G + ["--steps", "5000", "--out", "o.mp4"], "--steps", "from 1 to 1000"),
    (G + ["--frames", "0", "--out", "o.mp4"], "--frames", "from 2 to 256"),
    (G + ["--frames", "100000", "--out", "o.mp4"], "--frames", "from 2 to 256"),
    (G + ["--height", "100000", "--width", "100000", "--out", "o.mp4"], "--max-pixels", "cap"),
    (G + ["--height", "50", "--out", "o.mp4"], "--height", "nearest valid sizes: 48 or 64"),
    (G + ["--aspect", "4:3", "--out", "o.mp4"], "--aspect", "unknown aspect"),
    (G + ["--guidance", "-1", "--out", "o.mp4"], "--guidance", ">= 0"),
    (G + ["--guidance-interval", "900", "100", "--out", "o.mp4"], "--guidance-interval", "LOW"),
    (G + ["--fps", "0", "--out", "o.mp4"], "--fps", "from 0.1 to 120"),
    (G + ["--fps", "1e-9", "--out", "o.mp4"], "--fps", "from 0.1 to 120"),
    (G + ["--fps", "100", "--out", "o.gif"], "--fps", "a GIF plays at most 50"),
    (G + ["--guidance-interval", "5000", "9000", "--out", "o.mp4"], "--guidance-interval",
     "HIGH <= 1000"),
    (G + ["--seed", str(2**70), "--out", "o.mp4"], "--seed", "--seed must be from 0 to 2**64"),
    (G + ["--seed", "-1", "--out", "o.mp4"], "--seed", "--seed must be from 0 to 2**64"),
    (G + ["--device", "cuda", "--out", "o.mp4"], "--device", "cuda"),
    (G + ["--device", "tpu", "--out", "o.mp4"], "--device", "tpu"),
    (G + ["--dtype", "float16", "--out", "o.mp4"], "--dtype", "float16"),
    (G + ["--offload", "--out", "o.mp4"], "--offload", "offload"),
    # generate: the model folder
    (G + ["--model", "nowhere", "--out", "o.mp4"], "--model", "model folder not found"),
    (G + ["--model", "adir", "--out", "o.mp4"], "--model", "no model_index.json"),
    (G + ["--model", "m_index", "--out", "o.mp4"], "--model", "model_index.json is not valid"),
    (G + ["--model", "m_trunc", "--out", "o.mp4"], "--model", "truncated"),
    (G + ["--model", "m_bin", "--out", "o.mp4"], "--model", "only pickle weights"),
    (G + ["--model", "m_gen", "--out", "o.mp4"], "--model", "generation.json: tau"),
    (G + ["--model", "m_nounet", "--out", "o.mp4"], "--model", "there is no"),
    (G + ["--model", "m_huge", "--out", "o.mp4"], "--model", "claims shape [1048576, 1048576]"),
    # story
    (["story", "nowhere.yaml", "--out", "o.mp4"], "storyboard", "storyboard not found"),
    (["story", "bad.yaml", "--out", "o.mp4"], "storyboard", "not valid YAML"),
    (["story", "story_list.yaml", "--out", "o.mp4"], "storyboard", "first_frame must be"),
    (["story", "story_empty.yaml", "--out", "o.mp4"], "storyboard", "non-empty list"),
    (["story", "story_tau.yaml", "--steps", "10", "--out", "o.mp4"], "shot tau", "shot 1"),
    (["story", "story_last.yaml", "--out", "o.mp4"], "shot last_frame", "image not found"),
    (["story", "story_keys.yaml", "--out", "o.mp4"], "shot keys", "unknown keys ['tua']"),
    (["story", "story_frames.yaml", "--out", "o.mp4"], "shot frames", "from 2 to 256"),
    (["story", "story_257.yaml", "--out", "o.mp4"], "shot frames", "from 2 to 256"),
    (["story", "bad.JSON", "--out", "o.mp4"], "storyboard", "bad.JSON is not valid JSON"),
    (["story", "adir", "--out", "o.mp4"], "storyboard", "is a folder"),
    # check-data
    (["check-data", "videos.csv", "--fps", "-1"], "--fps", "greater than 0"),
    (["check-data", "videos.csv", "--frames", "0"], "--frames", "at least 1"),
    (["check-data", "adir"], "manifest", "is a folder"),
    (["check-data", "nowhere.csv"], "manifest", "not found"),
    # make-shapes
    (["make-shapes", "--out", "new", "--num", "-5"], "--num", "at least 1"),
    (["make-shapes", "--out", "new", "--num", "0"], "--num", "at least 1"),
    (["make-shapes", "--out", "afile", "--num", "2"], "--out", "is a file"),
    (["make-shapes", "--out", "full", "--num", "2"], "--out", "pixeldance did not write"),
    (["make-shapes", "--out", ".", "--num", "2"], "--out", "is the current folder"),
    (["make-shapes", "--out", "new", "--num", "2", "--workers", "0"], "--workers", "at least 1"),
    (["make-shapes", "--out", "new", "--num", "2", "--mover-share", "2"], "--mover-share", "0"),
    (["make-shapes", "--out", "new", "--num", "2", "--shapes", "octagon"], "--shapes", "octagon"),
    (["make-shapes", "--out", "new", "--num", "2", "--shapes", "star,"], "--shapes", "choose from"),
    (["make-shapes", "--out", "new", "--num", "2", "--motions", "wiggle"], "--motions", "wiggle"),
    (["make-shapes", "--out", "new", "--num", "2", "--motions", "fade,"], "--motions", "fade"),
    (["make-shapes", "--out", "new", "--num", "2", "--motion-share", "0.5"], "--motion-share", "needs --motions"),
    (["make-shapes", "--out", "new", "--num", "2", "--motions", "fade", "--motion-share", "-1"], "--motion-share", "between 0 and 1"),
    # train
    (["train", "--data", "adir", "--output-dir", "run"], "--data", "is a folder"),
    (["train", "--data", "stills.csv", "--output-dir", "run"], "--data", "lists still images"),
    (["train", "--data", "nowhere.csv", "--output-dir", "run"], "--data", "not found"),
    (["train", "--config", "nowhere.yaml", "--data", "videos.csv"], "--config", "not found"),
    (["train", "--data", "videos.csv", "--max-steps", "0"], "--max-steps", "at least 1"),
    (["train", "--data", "videos.csv", "--set", "optim.lr_rate=1"], "--set", "unknown config"),
    (["train", "--data", "videos.csv", "--output-dir", "afile"], "--output-dir", "is a file"),
    (["train", "--data", "videos.csv", "--output-dir", "full"], "--output-dir", "did not write"),
    (["train", "--data", "videos.csv", "--set", "model.init=stable-diffusion",
      "--set", "model.pretrained=m_bin"], "--set", "m_bin/unet holds only pickle"),
    (["train", "--data", "videos.csv", "--set", "model.init=pixeldance",
      "--set", "model.pretrained=m_bin"], "--set", "only pickle weights"),
    # preprocess
    (["preprocess", "--data", "videos.csv", "--out", "full"], "--out", "pixeldance did not write"),
    (["preprocess", "--data", "stills.csv", "--out", "c"], "--data", "lists still images"),
    (["preprocess", "--data", "videos.csv", "--out", "c", "--clips-per-video", "0"], "--clips", "1"),
    # export
    (["export", str(shipped_model_path()), "--out", "e", "--choices", "{5"], "--choices", "JSON"),
    (["export", "adir", "--out", "e"], "pipeline", "no model_index.json"),
    (["export", "m_gen", "--out", "full"], "--out", "full exists and holds files pixeldance"),
    (["export", "m_gen", "--out", "."], "--out", "is the current folder or holds it"),
    (["export", "m_gen", "--out", ".."], "--out", "is the current folder or holds it"),
    (["export", "m_gen", "--out", "m_gen/inner"], "--out", "overlaps what the command reads"),
    (["export", "m_gen", "--out", "m_nounet"], "--out", "pass --overwrite to replace it"),
    (["export", "m_gen", "--out", "afile"], "--out", "is a file"),
    # eval
    (["eval", "--videos", "adir", "--out", "full"], "--out", "pixeldance did not write"),
]  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    prepare(d)
    return d


@pytest.mark.parametrize(
    "argv, what, message", CASES, ids=[f"{a[0]}-{w}-{i}" for i, (a, w, _) in enumerate(CASES)]
)
def test_bad_input_is_refused_in_one_line(
    argv, what, message, inputs, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "w"
    shutil.copytree(inputs, work, symlinks=True)
    monkeypatch.chdir(work)
    before = tree(work)
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (code, captured.err[-2000:])
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err[-2000:]
    assert lines[0].startswith(f"pixeldance {argv[0]}: error: ")
    assert message in lines[0], lines[0]
    assert tree(work) == before, "a refused command left files behind"


def test_the_table_is_long_enough():
    assert len(CASES) >= 40


DEMO_CASES = [
    (dict(steps=0), "num_inference_steps must be an integer from 1 to 100"),
    (dict(aspect="4:3"), "unknown aspect"),
    (dict(prompt="x" * 1000), "keep it under"),
    (dict(prompt="", first_frame=None), "give a prompt"),
    (dict(first_frame=str(ROOT / "README.md")), "the first frame is not an image: README.md"),
    (dict(last_frame=str(ROOT / "nowhere.png")), "the last frame is not an image: nowhere.png"),
    (dict(prompt="a red \udcff circle"), "not valid UTF-8"),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    from pixeldance.cli.demo import DemoRunner

    return DemoRunner(out_dir=tmp_path_factory.mktemp("demo"))


@pytest.mark.parametrize("change, message", DEMO_CASES)
def test_demo_requests_are_refused_in_one_line(runner, change, message):
    from pixeldance.cli.demo import DemoInputError

    request = dict(
        prompt=RED, first_frame=None, last_frame=None, tau=0, steps=2, aspect="1:1", seed=0
    )
    request.update(change)
    before = sorted(runner.out_dir.iterdir())
    with pytest.raises(DemoInputError, match=message) as err:
        runner(**request)
    assert "\n" not in str(err.value)
    assert sorted(runner.out_dir.iterdir()) == before
