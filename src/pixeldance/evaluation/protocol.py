"""The metrics and the paper's two evaluation setups as presets.

A preset fixes what the paper fixes (metrics, frames, resolution, how many samples, where the
prompts come from) and carries the paper's numbers, so a report can print them beside the
user's. What the paper does not say is a documented choice here (see EVALUATION.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# every score `pixeldance eval` can compute
METRICS = ("fvd", "fid", "is", "clipsim", "flicker", "fidelity", "psnr", "ssim")
# the scores that need a network (and its weights file)
NEEDS_WEIGHTS = {"fvd": "i3d", "fid": "inception", "is": "inception", "clipsim": "clip"}

# where first-frame instructions come from when generating: the manifest's column only; else
# frame 0 of the reference video; none (text only)
FIRST_FRAME_SOURCES = ("manifest", "reference", "none")
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
        metrics=("fvd", "is", "fid"),
        samples=10_000,  # the paper gives no count; 10,000 is the usual UCF-101 count
        expected_rows=None,
        class_prompts=True,
        paper={"fvd": 242.8, "is": 42.10, "fid": 49.36},  # paper, Table 2 (UCF-101, zero-shot)
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
