"""The shipped model's outputs are pinned: the same command and seed give the same frames.

The frames in ``tests/data/pinned_*.png`` (one strip per command, frames side by side) were
written by these commands. A refactor must leave them unchanged; a deliberate change of the
shipped model or its defaults rewrites them (run this file with ``PIXELDANCE_REPIN=1``).
"""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixeldance.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"

CASES = {
    # the README's main command
    "readme": [
        "--prompt", "a red circle moves to the right",
        "--first-frame", "examples/red_circle.png",
        "--last-frame", "examples/red_circle_end.png",
        "--tau", "50",
    ],
    # a last frame, the tau rule, another aspect, another seed, fewer steps
    "last_frame_16x9": [
        "--prompt", "a blue square moves up",
        "--first-frame", "examples/red_circle.png",
        "--last-frame", "examples/red_circle_end.png",
        "--steps", "10", "--tau", "5", "--aspect", "16:9", "--seed", "3",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_shipped_model_output_is_pinned(name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "frames"
    assert main(["generate", *CASES[name], "--out", str(out)]) == 0
    frames = [np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]
    strip = np.concatenate(frames, axis=1)
    pinned = DATA / f"pinned_{name}.png"
    if os.environ.get("PIXELDANCE_REPIN"):
        Image.fromarray(strip).save(pinned)
    expected = np.asarray(Image.open(pinned))
    assert strip.shape == expected.shape
    diff = np.abs(strip.astype(np.int16) - expected.astype(np.int16))
    # identical on the machine that pinned them; a CPU with other float kernels may round a
    # few values differently, never more than this
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
