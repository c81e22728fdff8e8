"""What an evaluation reads: manifests of prompts, instructions and videos; folders of videos;
clips decoded by a fixed rule.

A manifest is CSV or JSONL, one row per sample, paths relative to ``root`` (default: the
manifest's folder). Columns (first match wins):

- prompt: ``prompt``, ``caption``, ``text``, ``name``, ``class``, ``label``;
- first / last frame instructions: ``first_frame``, ``last_frame`` (images);
- the generated video to score (scoring a folder): ``video``, ``path``, ``file``, ``filepath``;
- the reference video: ``reference``; when generating, also ``video``, ``path``, ``file``.

MSR-VTT's own annotation file (JSON with ``videos`` and ``sentences``) is read directly: one
row per test video, one of its captions drawn at random with a seed, the reference
``{root}/{video_id}.mp4``. A folder of
videos is read as rows too: each file, with the text of a ``.txt`` beside it as its prompt.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.video import decode_clip, probe
from ..files import read_image
from ..images import resize_cover_crop

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".avi", ".mkv", ".mov")
PROMPT_COLUMNS = ("prompt", "caption", "text", "name", "class", "label")
VIDEO_COLUMNS = ("video", "path", "file", "filepath")
REFERENCE_COLUMNS = ("reference",)


@dataclass
class Item:
    """One sample: its prompt and instructions, the generated video, its reference video."""

    prompt: str | None = None
    first_frame: Path | None = None
    last_frame: Path | None = None
    video: Path | None = None
    reference: Path | None = None


def _rows(path: Path, caption_seed: int = 0) -> list[dict]:
    """The rows of a manifest; one that is not UTF-8 CSV/JSON(L) is a ValueError naming it."""
    if not path.is_file():  # a FIFO would wait for a writer forever
        raise ValueError(f"manifest {path} is not a regular file (a pipe or a device?)")
    try:
        return _read_rows(path, caption_seed)
    except UnicodeDecodeError as err:
        raise ValueError(f"manifest {path} is not UTF-8 text (byte {err.start})") from err
    except (json.JSONDecodeError, csv.Error) as err:
        raise ValueError(f"manifest {path} could not be read ({err})") from err


def _read_rows(path: Path, caption_seed: int) -> list[dict]:
    if path.suffix.lower() == ".jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and {"videos", "sentences"} <= set(data):
            return msrvtt_rows(data, seed=caption_seed)
        if isinstance(data, list):
            return data
        raise ValueError(f"{path}: expected a list of rows or MSR-VTT's videos + sentences")
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def msrvtt_rows(data: dict, split: str = "test", seed: int = 0) -> list[dict]:
    """MSR-VTT annotations -> one row per ``split`` video, in video-id order: its reference
    ``{video_id}.mp4`` and one of its captions drawn at random (the paper: "we randomly
    select one caption per video"): the videos' captions sorted by ``sen_id``, and caption
    ``rng.integers(count)`` of each, with ``rng = np.random.default_rng(seed)`` drawn once per
    video in video-id order."""
    videos = sorted(v["video_id"] for v in data["videos"] if v.get("split", split) == split)
    captions: dict[str, list[tuple[int, str]]] = {}
    for s in data["sentences"]:
        captions.setdefault(s["video_id"], []).append((s.get("sen_id", 0), s["caption"]))
    missing = [v for v in videos if v not in captions]
    if missing:
        raise ValueError(
            f"MSR-VTT annotations: no caption for {len(missing)} videos, e.g. {missing[0]}"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for v in videos:
        options = sorted(captions[v])
        rows.append(
            {"prompt": options[int(rng.integers(len(options)))][1], "reference": f"{v}.mp4"}
        )
    return rows


def caption_rule(source: str | Path, seed: int) -> str | None:
    """How prompts were chosen from an MSR-VTT annotation file (None for other sources)."""
    source = Path(source)
    if source.suffix.lower() != ".json" or not source.is_file():
        return None
    data = json.loads(source.read_text())
    if not (isinstance(data, dict) and {"videos", "sentences"} <= set(data)):
        return None
    return (
        f"one per video, drawn at random: captions sorted by sen_id, numpy default_rng({seed})"
        ".integers(count) per video in video-id order"
    )


def _pick(row: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def read_manifest(
    manifest: str | Path,
    root: str | Path | None = None,
    generating: bool = False,
    caption_seed: int = 0,
) -> list[Item]:
    """Items from a manifest. ``generating``: the video column names the reference (there is
    no generated video yet); ``caption_seed``: the draw of MSR-VTT captions."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    rows = _rows(manifest, caption_seed)
    if not rows:
        raise ValueError(f"manifest has no rows: {manifest}")
    base = Path(root) if root else manifest.parent

    def path(value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value)
        return p if p.is_absolute() else base / p

    items = []
    for row in rows:
        video = _pick(row, VIDEO_COLUMNS)
        reference = _pick(row, REFERENCE_COLUMNS)
        items.append(
            Item(
                prompt=_pick(row, PROMPT_COLUMNS),
                first_frame=path(_pick(row, ("first_frame",))),
                last_frame=path(_pick(row, ("last_frame",))),
                video=None if generating else path(video),
                reference=path(reference or (video if generating else None)),
            )
        )
    return items


def list_videos(folder: str | Path) -> list[Path]:
    """Video files under ``folder``, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise ValueError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {folder}")
    return files


def read_items(
    source: str | Path,
    root: str | Path | None = None,
    generating: bool = False,
    caption_seed: int = 0,
) -> list[Item]:
    """Items from a manifest, or from a folder of videos (each with an optional ``.txt``
    prompt beside it; as references when ``generating``)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(
            f"not found: {source} (give a folder of videos or a CSV/JSONL manifest)"
        )
    if not source.is_dir():
        return read_manifest(source, root, generating, caption_seed)
    items = []
    for p in list_videos(source):
        txt = p.with_suffix(".txt")
        prompt = txt.read_text().strip() if txt.is_file() else None
        items.append(Item(prompt=prompt, **({"reference": p} if generating else {"video": p})))
    return items


def reference_paths(source: str | Path, root: str | Path | None = None) -> list[Path]:
    """Reference videos: every video under a folder, or a manifest's reference (else video)
    column."""
    source = Path(source)
    if source.is_dir():
        return list_videos(source)
    items = read_manifest(source, root, generating=True)
    paths = [it.reference for it in items if it.reference is not None]
    if not paths:
        raise ValueError(f"{source} names no reference videos (a reference, video or path column)")
    return paths


_UCF_NAME = re.compile(r"^v_([A-Za-z]+)_g\d+_c\d+$")


def ucf101_class(path: Path) -> str | None:
    """UCF-101 class of a file named ``v_{Class}_g{group}_c{clip}``, else None."""
    m = _UCF_NAME.match(path.stem)
    return m.group(1) if m else None


def class_prompt(name: str) -> str:
    """A UCF-101 class name as a prompt: ``ApplyEyeMakeup`` -> ``apply eye makeup``."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name).lower().strip()


# ---------------------------------------------------------------- frames
def native_fps(path: str | Path) -> float:
    return probe(path).fps


def sample_clip(
    path: str | Path,
    frames: int,
    fps: float | None = None,
    start: float | None = 0.0,
    rng: np.random.Generator | None = None,
):
    """A :class:`pixeldance.data.video.Clip` of ``frames`` frames at ``fps`` (None: the
    video's own rate) from ``start`` seconds (None: a start drawn with ``rng``); its ``fps``
    is the rate actually used (higher than asked for a video too short for the span)."""
    fps = math.inf if fps is None else fps
    return decode_clip(path, num_frames=frames, fps=fps, start=start, rng=rng)


def read_clip(path: str | Path, frames: int, fps: float | None = None) -> np.ndarray:
    """uint8 ``(frames, H, W, 3)``: ``frames`` frames from the start of the video at ``fps``
    (None: the video's own rate, i.e. consecutive frames). Deterministic (no random start);
    raises :class:`pixeldance.data.video.VideoError` for a video that cannot give them."""
    # decode_clip never goes above the video's own rate: an unbounded fps is that rate
    fps = math.inf if fps is None else fps
    return decode_clip(path, num_frames=frames, fps=fps, start=0.0).frames


def fit_image(image: str | Path | np.ndarray, height: int, width: int) -> np.ndarray:
    """An image (path or uint8 ``(H, W, 3)``) at ``height x width`` the way the pipeline fits
    its instructions: resized to cover (bicubic), centre-cropped. uint8 ``(height, width, 3)``."""
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else read_image(image)
    return np.asarray(resize_cover_crop(pil, height, width))


def fit_clip(clip: np.ndarray, height: int, width: int) -> np.ndarray:
    """Each frame of a uint8 clip ``(F, H, W, 3)`` fitted to ``height x width`` (as :func:`fit_image`)."""
    if clip.shape[1:3] == (height, width):
        return clip
    return np.stack([fit_image(f, height, width) for f in clip])
