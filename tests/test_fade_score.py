"""The fine-tuning example's measure (benchmarks/finetune_shapes.py) tells fading from staying."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from finetune_shapes import fade_clips, fade_scores, growing, render_at  # noqa: E402


def test_the_truth_fades_a_copy_stays_and_the_control_keeps_everything():
    data = fade_clips(4, 4.0, 16, (48, 48))
    assert all(c.camera == "static" for c, _ in data)
    assert all(o.motion == "fade" for c, _ in data for o in c.objects)
    truth = np.stack([v for _, v in data])
    assert fade_scores(truth, data)["remaining"] == 0.0
    assert fade_scores(truth, data)["rate"] == 1.0
    still = np.repeat(truth[:, :1], 16, axis=1)  # a model that keeps the first frame
    assert fade_scores(still, data)["remaining"] == 1.0
    assert fade_scores(still, data)["rate"] == 0.0
    grows = [growing(c) for c, _ in data]
    assert all("fade" not in c.caption and "disappears" not in c.caption for c in grows)
    grown = np.stack([render_at(c, 4.0, 16, (48, 48)) for c in grows])
    assert fade_scores(grown, data)["remaining"] > 0.95
