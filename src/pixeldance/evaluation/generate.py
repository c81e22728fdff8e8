"""Generate the videos an evaluation scores, with the model's own generation settings.

Sample ``i`` is drawn with its own generator seeded ``seed + i``, made as generation makes it
(``settings.placement.generator``: on the GPU with a CUDA device, else on the CPU), so a sample does not depend
on which others are generated. Videos go to ``{out}/videos/{i:05d}.mp4``; an image instruction
taken from a reference video is saved beside them, and ``{out}/generated.csv`` lists every
sample (video, prompt, instructions, reference), so the folder can be scored again alone.
Videos already there from a run with the same settings are kept (an interrupted run resumes).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ..files import atomic_path, write_video
from .first_frames import FIRST_FRAMES_DIR, Maker, cached_first_frame
from .inputs import Item, class_prompt, read_clip
from .protocol import FIRST_FRAME_SOURCES

MADE_SOURCES = ("t2i", "self")  # first frames made from the prompt

GENERATION_RECORD = "generation.json"


def plan_samples(
    items: Sequence[Item], samples: int | None, class_prompts: bool = False
) -> list[Item]:
    """``samples`` items spread evenly over ``items`` (item ``i * n // samples``; None: each
    once), prompts turned into class-name prompts if ``class_prompts``."""
    n = len(items)
    samples = n if samples is None else samples
    if samples < 1:
        raise ValueError(f"--samples must be at least 1, got {samples}")
    out = []
    for i in range(samples):
        it = items[i * n // samples]
        if class_prompts and it.prompt:
            it = replace(it, prompt=class_prompt(it.prompt))
        out.append(it)
    return out


def first_frame_source(item: Item, source: str) -> Path | None:
    """Where a sample's first-frame instruction comes from under the ``source`` rule: its
    ``first_frame`` image, else (``source == "reference"``) its reference video, whose frame 0
    is the instruction; None for none (always under ``source == "none"``). Under ``t2i`` and
    ``self`` every sample's first frame is made from its prompt: the path it will have."""
    if source in MADE_SOURCES:
        return Path(FIRST_FRAMES_DIR) / "(made from the prompt)"
    if source == "none":
        return None
    if item.first_frame is not None:
        return item.first_frame
    if source == "reference" and item.reference is not None:
        return item.reference
    return None


def first_frame_instruction(item: Item, source: str, out: Path, index: int, maker, seed: int):
    """The first-frame instruction of a sample under the ``source`` rule, and its file."""
    if source in MADE_SOURCES:
        path = cached_first_frame(maker, item.prompt or "", seed, out, index)
        return path, path
    found = first_frame_source(item, source)
    if found is None or found is item.first_frame:
        return found, found
    frame = read_clip(found, 1)[0]
    path = out / "instructions" / f"{index:05d}_first.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(frame).save(tmp, format="PNG")
    return frame, path


LAST_FRAME_SOURCES = ("manifest", "reference")


def _last_frame(item: Item, source: str, out: Path, index: int, frames: int, fps: float):
    """The last-frame instruction: the manifest's, else (``source == "reference"``) frame
    ``frames - 1`` of the reference read at the generation rate ``fps`` (the frame the clip
    should end on), saved beside the videos; None for none."""
    if item.last_frame is not None or source == "manifest" or item.reference is None:
        return item.last_frame
    frame = read_clip(item.reference, frames, fps)[-1]
    path = out / "instructions" / f"{index:05d}_last.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(frame).save(tmp, format="PNG")
    return path


def _check_record(folder: Path, record: dict) -> None:
    """Refuse to mix videos made with other settings into this run."""
    path = folder / GENERATION_RECORD
    record = json.loads(json.dumps(record))  # as it reads back (tuples become lists)
    if path.is_file():
        old = json.loads(path.read_text())
        if old != record:
            changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ValueError(
                f"{folder} holds videos generated with other settings ({', '.join(changed)} "
                "differ); use another --out or delete that folder"
            )
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))


def generate_videos(
    pipe,
    settings,
    items: Sequence[Item],
    out: str | Path,
    seed: int = 0,
    first_frame: str = "manifest",
    record: dict | None = None,
    progress: bool = True,
    maker: Maker | None = None,
    last_frame: str = "manifest",
) -> list[Item]:
    """Generate one video per item; return the items with ``video`` set. ``settings``: a
    :class:`pixeldance.generation.GenerationSettings` (``pipe.generation_settings(...)``), its
    placement making each sample's generator;
    ``first_frame``: where first-frame instructions come from ("manifest": its column only,
    "reference": else frame 0 of the reference video, "none": text only, "t2i"/"self": made
    from the prompt by ``maker`` with seed ``seed + i``, see :mod:`.first_frames`);
    ``last_frame``: "manifest" (its column) or "reference" (else the reference's frame at the
    clip's last index, read at the generation rate)."""
    from ..images import frames_to_uint8

    if first_frame not in FIRST_FRAME_SOURCES:
        raise ValueError(f"first_frame must be one of {', '.join(FIRST_FRAME_SOURCES)}")
    if first_frame in MADE_SOURCES and maker is None:
        raise ValueError(f"first_frame {first_frame!r} needs a maker (the model that makes it)")
    out = Path(out)
    folder = out / "videos"
    if last_frame not in LAST_FRAME_SOURCES:
        raise ValueError(f"last_frame must be one of {', '.join(LAST_FRAME_SOURCES)}")
    marks = {"seed": seed, "first_frame": first_frame}
    if last_frame != "manifest":
        marks["last_frame"] = last_frame
    _check_record(folder, {**(record or {}), **marks})
    done = []
    for i, it in enumerate(tqdm(items, desc="generating", disable=not progress)):
        path = folder / f"{i:05d}.mp4"
        image, image_path = first_frame_instruction(it, first_frame, out, i, maker, seed + i)
        last = _last_frame(it, last_frame, out, i, settings.num_frames, settings.fps)
        if not path.is_file():
            result = pipe(
                it.prompt or "",
                first_frame=image,
                last_frame=last,
                generator=settings.placement.generator(seed + i),
                output_type="np",
                settings=settings,
            )
            write_video(frames_to_uint8(result.frames), path, fps=settings.fps)
        done.append(replace(it, video=path, first_frame=image_path, last_frame=last))
    write_generated_manifest(out / "generated.csv", done)
    return done


def write_generated_manifest(path: Path, items: Sequence[Item]) -> Path:
    """``video, prompt, first_frame, last_frame, reference`` per sample, paths absolute."""
    fields = ["video", "prompt", "first_frame", "last_frame", "reference"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for it in items:
                row = {k: getattr(it, k) for k in fields if k != "prompt"}
                row = {k: "" if v is None else str(Path(v).resolve()) for k, v in row.items()}
                w.writerow({**row, "prompt": it.prompt or ""})
    return path
