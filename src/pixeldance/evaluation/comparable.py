"""What a report needs beyond the scores: how the generated videos were encoded, the settings
that made them (also when a folder is scored again), and, per score, one line "comparable with
the paper: yes/no, because ..." from the protocol the run actually had."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .inputs import Item
from .protocol import Preset

PAPER_FRAMES = 16  # paper, sec. 4.1
PAPER_SIZE = "256x256"  # paper, sec. 4.1
WRITER_CRF = 18  # pixeldance.files.write_mp4's CRF (the generated clips' encode)


def video_encode(items: Sequence[Item], record: dict | None) -> str:
    """The generated clips' encode as read from the first file (codec, pixel format), with the
    CRF when this project wrote them (a generation record beside them)."""
    import av

    path = items[0].video
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            codec, pix = stream.codec_context.name, stream.codec_context.pix_fmt
    except (av.error.FFmpegError, IndexError, OSError) as err:
        return f"unknown ({path}: {err})"
    text = f"{codec}, {pix} (read from {Path(path).name})"
    if record is not None:
        text += f"; written by pixeldance with CRF {WRITER_CRF} (lossy: scored as decoded)"
    return text


def generation_record(items: Sequence[Item]) -> dict | None:
    """The ``generation.json`` beside the scored videos (``{out}/videos/``), if they were made
    by ``pixeldance eval``: the settings, model and first-frame source they were made with."""
    folders = {Path(it.video).parent for it in items if it.video is not None}
    if len(folders) != 1:
        return None
    path = folders.pop() / "generation.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _first_frames(report: dict, record: dict | None) -> str | None:
    text = report["protocol"].get("first_frame_instructions")
    if text:
        return text.split(":")[0]
    return record.get("first_frame") if record else None


def comparability(report: dict, preset: Preset | None, record: dict | None) -> dict[str, str]:
    """Per score: "yes, because ..." or "no, because ...", from what the run did."""
    out = {}
    first = _first_frames(report, record)
    resolution = report["protocol"].get("resolution") or []
    for key, entry in report["scores"].items():
        p = entry["protocol"]
        if preset is None or key not in preset.paper:
            if key == "is":
                why = "this is Inception on frames; the paper's UCF-101 IS is the C3D video IS"
            elif preset is None:
                why = "no --preset: not one of the paper's setups"
            else:
                why = f"the paper reports no such score on {preset.name}"
            out[key] = f"no, because {why}"
            continue
        no, caveats = [], []
        if p.get("checksum_verified") is False:
            no.append("the weights' checksum does not match the known file")
        elif p.get("checksum_verified") is None:
            caveats.append(f"{p.get('extractor')} has no known checksum: use the standard file")
        expected = preset.expected_rows or preset.samples
        count = p.get("generated_samples") or p.get("samples_scored") or p.get("clips")
        if key == "is" or key == "video_is":
            count = p.get("samples_scored")
        if expected and count != expected:
            no.append(f"{count} samples, the benchmark has {expected}")
        if first != "t2i":
            no.append(f"first frames {first or 'unknown'}, the paper's are Stable Diffusion 2.1's")
        if report["protocol"].get("frames") != PAPER_FRAMES:
            no.append(f"{report['protocol'].get('frames')} frames, not {PAPER_FRAMES}")
        if resolution != [PAPER_SIZE]:
            no.append(f"generated at {', '.join(resolution)}, not {PAPER_SIZE}")
        if no:
            out[key] = "no, because " + "; ".join(no)
        else:
            out[key] = "yes, because the preset's protocol ran in full" + (
                f" ({'; '.join(caveats)})" if caveats else ""
            )
            if key == "clipsim":
                out[key] += "; the paper does not name its CLIP (ViT-B/32 is the usual one)"
            if first == "t2i":
                out[key] += "; the --t2i model should be Stable Diffusion 2.1"
    return out
