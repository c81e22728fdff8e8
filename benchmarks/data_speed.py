"""Clip sampling speed: seek-based decoding against decoding the whole video.

For each source video, samples clips of 16 frames at 4 fps from random starts, once with
``pixeldance.data.video.decode_clip`` (seek to the key frame before the start, decode only up to
the last frame needed) and once by decoding every frame and picking the clip's frames. Sources:
the real videos in ../shared/data/real/videos and a longer 720p clip made here (2 s GOP, as
typical of web video). Last line: one JSON object.

    python benchmarks/data_speed.py [--clips 10] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from pixeldance.data.video import decode_all, decode_clip, frame_indices, probe

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "videos"


def make_long_clip(path: Path, seconds: float, fps: int = 24, size=(720, 1280)) -> Path:
    """A moving gradient at 720p, H.264 with a key frame every 2 s."""
    import av

    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(2 * fps), "crf": "23"}
        for i in range(int(seconds * fps)):
            frame = np.stack(
                [(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (3 * i) % 256)], -1
            ).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def sample_seek(path, starts, num_frames, fps):
    for s in starts:
        clip = decode_clip(path, num_frames, fps, start=s)
        assert clip.frames.shape[0] == num_frames


def sample_full(path, starts, num_frames, fps, native_fps):
    for s in starts:
        frames = decode_all(path)
        idx = frame_indices(native_fps, num_frames, fps, int(np.floor(s * native_fps + 1e-6)))
        assert frames[idx].shape[0] == num_frames


def bench(path: Path, clips: int, num_frames: int, fps: float, seed: int = 0) -> dict:
    info = probe(path)
    span = (num_frames - 1) / fps
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, max(0.0, info.duration - span - 1 / info.fps), size=clips)
    t = time.perf_counter()
    sample_seek(path, starts, num_frames, fps)
    seek_s = time.perf_counter() - t
    t = time.perf_counter()
    sample_full(path, starts, num_frames, fps, info.fps)
    full_s = time.perf_counter() - t
    return {
        "video": path.name,
        "size": f"{info.width}x{info.height}",
        "duration_s": round(info.duration, 1),
        "seek_clips_per_s": round(clips / seek_s, 2),
        "full_clips_per_s": round(clips / full_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10, help="clips sampled per video and method")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="length of the generated 720p clip"
    )
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--fps", type=float, default=4.0)
    args = parser.parse_args()

    sources = sorted(REAL.glob("*.mp4")) if REAL.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        sources.append(make_long_clip(Path(tmp) / "long720p.mp4", args.seconds))
        rows = [bench(p, args.clips, args.frames, args.fps) for p in sources]
    for r in rows:
        print(
            f"{r['video']:20s} {r['size']:>9s} {r['duration_s']:6.1f}s  seek {r['seek_clips_per_s']:7.2f} clips/s  "
            f"full {r['full_clips_per_s']:7.2f} clips/s"
        )
    seek = sum(r["seek_clips_per_s"] for r in rows) / len(rows)
    full = sum(r["full_clips_per_s"] for r in rows) / len(rows)
    long = rows[-1]
    print(
        json.dumps(
            {
                "seek_clips_per_s": round(seek, 2),
                "full_clips_per_s": round(full, 2),
                "ratio": round(seek / full, 2),
                "long_720p_ratio": round(long["seek_clips_per_s"] / long["full_clips_per_s"], 2),
                "videos": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
