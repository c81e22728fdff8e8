"""The metrics and the paper's two evaluation setups as presets.

A preset fixes what the paper fixes (metrics, frames, resolution, how many samples, where the
prompts come from) and carries the paper's numbers, so a report can print them beside the
user's. What the paper does not say is a documented choice here (see EVALUATION.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# every score `pixeldance eval` can compute
METRICS = (
    "fvd", "fid", "is", "video_is", "clipsim", "flicker", "fidelity", "keyframes", "psnr", "ssim",
)  # fmt: skip
# the scores that need a network (and its weights file)
NEEDS_WEIGHTS = {
    "fvd": "i3d",
    "fid": "inception",
    "is": "inception",
    "video_is": "c3d",
    "clipsim": "clip",
}

# where first-frame instructions come from when generating: the manifest's column only; else
# frame 0 of the reference video; none (text only); a text-to-image model's image of the
# prompt (the paper's zero-shot protocol, v1 sec. 4.2.1: Stable Diffusion 2.1); the model's own
# image mode (F = 1)
FIRST_FRAME_SOURCES = ("manifest", "reference", "none", "t2i", "self")
FIRST_FRAME_LABELS = {
    "manifest": "the manifest's first_frame column (rows without one: text only)",
    "reference": "ground truth first frame (frame 0 of the reference video): FVD and FID "
    "optimistic",
    "none": "none (text only)",
    "t2i": "made from each prompt by a text-to-image model (the paper's zero-shot protocol "
    "uses Stable Diffusion 2.1)",
    "self": "made from each prompt by this model's own image mode (1 frame, no image "
    "instructions), then used as the first-frame instruction",
}
DEFAULT_FRAMES = 16  # paper, sec. 4.1: 16-frame clips; FVD's I3D protocol takes 16 frames
DEFAULT_IS_SPLITS = 10  # the Inception Score's customary 10 splits


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    metrics: tuple[str, ...]
    # generated clips: None = one per manifest row; else this many, rows spread evenly
    samples: int | None
    expected_rows: int | None  # rows the full benchmark has (a different count is reported)
    class_prompts: bool  # prompts are class names (CamelCase split, lower case)
    paper: dict[str, float] = field(default_factory=dict)  # the paper's numbers (Table 1/2)
    frames: int = DEFAULT_FRAMES
    size: tuple[int, int] = (256, 256)  # paper, sec. 4.1: 256x256 base resolution
    note: str = ""


PRESETS = {
    "msrvtt": Preset(
        name="msrvtt",
        description="MSR-VTT test split, zero-shot: one clip per test video, prompted with "
        "one of its captions (2,990 videos)",
        metrics=("fvd", "clipsim"),
        samples=None,
        expected_rows=2990,  # the MSR-VTT test split: 2,990 videos
        class_prompts=False,
        paper={"fvd": 381.0, "clipsim": 0.3125},  # paper, Table 1 (MSR-VTT, zero-shot)
        note="paper: FVD 381, CLIPSIM 0.3125 (MSR-VTT, zero-shot, 256x256)",
    ),
    "ucf101": Preset(
        name="ucf101",
        description="UCF-101, zero-shot: prompts are the class names; 10,000 clips spread "
        "evenly over the reference videos (so over the classes as the references are)",
        metrics=("fvd", "video_is", "fid"),
        samples=10_000,  # the paper gives no count; 10,000 is the usual UCF-101 count
        expected_rows=None,
        class_prompts=True,
        # paper, Table 2 (UCF-101, zero-shot); its IS is TGANv2's C3D video IS
        paper={"fvd": 242.8, "video_is": 42.10, "fid": 49.36},
        note="paper: FVD 242.8, IS 42.10, FID 49.36 (UCF-101, zero-shot, 256x256)",
    ),
}


def get_preset(name: str | None) -> Preset | None:
    if name is None:
        return None
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def parse_metrics(text: str | None) -> tuple[str, ...] | None:
    """``"fvd,clipsim"`` -> ("fvd", "clipsim"); None or "auto" -> None (every metric the
    inputs allow)."""
    if text is None or text.strip() == "auto":
        return None
    names = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; use a comma-separated "
            f"list of {', '.join(METRICS)}, or auto"
        )
    return names


def training_first_frame_drop_prob(model_folder: str | Path) -> float | None:
    """The ``instructions.first_frame_drop_prob`` a pipeline folder was trained with, read from
    the training run's ``config.yaml`` (``{run}/pipeline`` sits beside it); None if unknown."""
    import yaml

    config = Path(model_folder).parent / "config.yaml"
    if not config.is_file():
        return None
    try:
        data = yaml.safe_load(config.read_text()) or {}
        return float(data.get("instructions", {}).get("first_frame_drop_prob", 0.0))
    except (yaml.YAMLError, AttributeError, TypeError, ValueError):
        return None


def text_only_warning(first_frame: str, drop_prob: float | None) -> str | None:
    """A warning when clips are generated from text alone by a model that never was (trained
    with ``first_frame_drop_prob`` 0, as the paper's recipe: every clip had its first frame)."""
    if first_frame not in ("none", "manifest") or drop_prob is None or drop_prob > 0:
        return None
    return (
        "text-only generation (no first-frame instruction) is out of distribution for this "
        "model: it was trained with first_frame_drop_prob 0; use --first-frame t2i or self"
    )


def preset_warnings(preset: Preset, samples: int, first_frame: str | None) -> list[str]:
    """What keeps a preset run from the paper's setup: the sample count, the first frames."""
    out = []
    expected = preset.expected_rows or preset.samples
    if expected and samples != expected:
        out.append(
            f"the {preset.name} benchmark has {expected} samples; this run has {samples}, so "
            "its numbers are not comparable with the paper's"
        )
    if first_frame is not None and first_frame != "t2i":
        out.append(
            f"first frames: {FIRST_FRAME_LABELS[first_frame]}; the paper's zero-shot numbers "
            "condition on first frames made by Stable Diffusion 2.1 (--first-frame t2i --t2i "
            "FOLDER)"
        )
    return out
