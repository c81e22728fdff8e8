"""The shipped PixelDance-Shapes model through the command line, as a new user runs it."""

import shlex
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from helpers import ROOT, cli
from pixeldance import PixelDancePipeline
from pixeldance.data.shapes import render_clip, sample_clip
from pixeldance.files import read_image
from pixeldance.folders import shipped_model_path
from pixeldance.generation import GenerationConfig
from pixeldance.images import resize_cover_crop

pytestmark = pytest.mark.skipif(
    not (shipped_model_path() / "model_index.json").exists(),
    reason="the shipped model is not in this checkout",
)


def video_info(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return len(frames), frames[0].shape[0], frames[0].shape[1]


def readme_main_command() -> list[str]:
    text = (ROOT / "README.md").read_text()
    line = next(
        ln for ln in text.splitlines() if "pixeldance generate" in ln and "pip install" in ln
    )
    return shlex.split(line.split("&&")[-1].strip())


def test_readme_main_command_writes_the_expected_video(tmp_path):
    cmd = readme_main_command()
    assert cmd[:2] == ["pixeldance", "generate"]
    out_index = cmd.index("--out") + 1
    cmd[out_index] = str(tmp_path / Path(cmd[out_index]).name)
    result = cli(*cmd[1:])
    assert result.returncode == 0, result.stderr[-2000:]
    d = GenerationConfig.load(shipped_model_path())
    n, h, w = video_info(Path(cmd[out_index]))
    assert n == d.num_frames and (h, w) == d.sizes["1:1"]
    # it uses the paper's pair, and the clip ends nearer the last-frame image than it starts
    last_image = cmd[cmd.index("--last-frame") + 1]
    with av.open(cmd[out_index]) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    target = np.asarray(resize_cover_crop(read_image(ROOT / last_image), h, w))
    assert mse(frames[-1], target) < mse(frames[0], target)
    # the circle travels from where the first image has it to where the last image has it,
    # never backwards by more than a pixel
    first_image = cmd[cmd.index("--first-frame") + 1]
    start = red_centre_x(np.asarray(resize_cover_crop(read_image(ROOT / first_image), h, w)))
    end = red_centre_x(target)
    xs = [red_centre_x(f) for f in frames]
    assert abs(xs[0] - start) < 1.5 and abs(xs[-1] - end) < 2.5, (start, end, xs)
    assert min(np.diff(xs)) > -1.0, xs


def red_centre_x(frame: np.ndarray) -> float:
    """Mean column of the pixels much redder than green or blue (the example's circle)."""
    f = frame.astype(np.float32)
    mask = f[..., 0] - f[..., 1:].max(-1) > 60
    assert mask.sum() > 20, "no red circle in the frame"
    return float(np.nonzero(mask)[1].mean())


@pytest.mark.parametrize("aspect,landscape", [("16:9", True), ("9:16", False)])
def test_aspect_flags(tmp_path, aspect, landscape):
    out = tmp_path / "a.mp4"
    result = cli(
        "generate",
        "--prompt",
        "a red circle moves to the right",
        "--aspect",
        aspect,
        "--steps",
        "4",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    _, h, w = video_info(out)
    assert (w > h) == landscape and w != h


def test_storyboard_length(tmp_path):
    board = tmp_path / "story.yaml"
    board.write_text(
        "shots:\n  - prompt: a blue square moves to the right\n  - prompt: a blue square moves down\n"
        "  - prompt: a blue square moves to the left\n"
    )
    out = tmp_path / "story.mp4"
    result = cli("story", str(board), "--steps", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    frames = GenerationConfig.load(shipped_model_path()).num_frames
    assert video_info(out)[0] == 3 * frames - 2
    # progress, shot by shot
    for k in (1, 2, 3):
        assert f"shot {k} of 3: a blue square" in result.stdout, result.stdout
        assert f"shot {k} of 3 done" in result.stdout, result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--first-frame", "missing.png"], "image not found"),
        (["--first-frame", "README.md"], "not a readable image"),
        (["--tau", "99", "--steps", "10"], "--tau"),
        (["--aspect", "4:3"], "unknown aspect"),
        (["--guidance-interval", "900", "100"], "--guidance-interval"),
    ],
)
def test_bad_input_one_line_error_and_no_file(tmp_path, args, message):
    out = tmp_path / "x.mp4"
    result = cli("generate", "--prompt", "x", *args, "--out", str(out))
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def pipe():
    p = PixelDancePipeline.from_pretrained(shipped_model_path())
    p.set_progress_bar_config(disable=True)
    return p


def held_out(seed: int, size) -> np.ndarray:
    from PIL import Image

    clip = sample_clip(99 * 1_000_003 + seed, aspect="1:1")
    video = render_clip(clip)[::6][:16]
    return np.stack(
        [np.asarray(Image.fromarray(f).resize(size[::-1], Image.Resampling.BOX)) for f in video]
    ), clip.caption


def mse(a, b) -> float:
    return float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))


def test_follows_first_and_last_frame(pipe):
    size = pipe.default_size()
    (a, cap_a), (b, _) = held_out(0, size), held_out(1, size)
    kw = dict(
        num_inference_steps=10,
        num_frames=8,
        height=size[0],
        width=size[1],
        output_type="np",
        guidance_scale=1.0,
    )
    out = pipe(cap_a, first_frame=a[0], generator=torch.Generator().manual_seed(0), **kw).frames[0]
    frame0 = (out[0] * 255).round()
    assert mse(frame0, a[0]) < mse(frame0, b[0])
    target = b[0]  # a last frame unlike the first: the pull must come from the instruction
    dists = []
    for tau in (0, 5, 10):
        o = pipe(
            cap_a,
            first_frame=a[0],
            last_frame=target,
            tau=tau,
            generator=torch.Generator().manual_seed(0),
            **kw,
        ).frames[0]
        dists.append(mse((o[-1] * 255).round(), target))
    assert dists[2] < dists[0] and dists[1] <= dists[0], dists


def test_export_writes_generation_settings_and_refuses_unknown_choices(tmp_path):
    import json

    out = tmp_path / "exported"
    choices = '{"guidance_scale": 5.0, "guidance_interval": [700, 1000]}'
    result = cli(
        "export", str(shipped_model_path()), "--out", str(out),
        "--config", "configs/shapes.yaml", "--choices", choices,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    made = json.loads((out / "generation.json").read_text())
    assert made["guidance_scale"] == 5.0 and made["guidance_interval"] == [700, 1000]
    assert made["training_instruction_noise"] == 15 and made["sizes"]["16:9"] == [48, 80]
    assert GenerationConfig.load(out).guidance_interval == (700, 1000)
    assert GenerationConfig.load(out).to_dict()["guidance_interval"] == [700, 1000]
    for bad, message in (
        ('{"guidence": 5.0}', "unknown key(s) guidence"),
        ("{5", "not valid JSON"),
    ):
        result = cli("export", str(shipped_model_path()), "--out", str(tmp_path / "x"),
                     "--choices", bad)  # fmt: skip
        assert result.returncode != 0 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / "x").exists()


def test_readme_python_example_runs(monkeypatch):
    """The README's Python example, as written, with the shipped model."""
    text = (ROOT / "README.md").read_text()
    block = text.split("In Python:\n\n```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    d = GenerationConfig.load(shipped_model_path())
    assert len(scope["frames"]) == d.num_frames and scope["frames"][0].size == (48, 48)
    assert len(scope["story"].frames[0]) == 2 * d.num_frames - 1
