"""Decode a clip of N frames at a target frame rate with PyAV, seeking to its start.

Frames are chosen by time, so variable frame rates are handled: for each target time
``start + i / fps`` the frame on screen at that time (the last one whose timestamp is at or
before it) is taken. Rotation metadata is
applied. Output is uint8 ``(F, H, W, 3)`` and the timestamps (seconds) of the frames taken.

Short clips (policy): if ``num_frames`` at ``fps`` do not fit in the video, the rate is raised
(the stride lowered) until they fit, down to the video's native rate; if even consecutive
native frames do not fit, :class:`ClipTooShort` is raised and the caller skips the video.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_NUM_FRAMES = 16  # paper, sec. 4.1: clips of 16 consecutive frames
DEFAULT_FPS = 4.0  # paper, sec. 4.1: sampled at 4 fps


class VideoError(Exception):
    """A video that cannot give a clip (missing, empty, corrupt, too short, too slow)."""


class ClipTooShort(VideoError):
    pass


class DecodeTimeout(VideoError):
    pass


@dataclass
class VideoInfo:
    duration: float  # seconds
    fps: float  # average native frame rate
    num_frames: int  # estimated from duration and fps if the container does not say
    width: int
    height: int


@dataclass
class Clip:
    frames: np.ndarray  # uint8 (F, H, W, 3)
    timestamps: np.ndarray  # (F,) seconds
    fps: float  # the rate actually used (may exceed the target for short videos)


def _source(path):
    """What ``av.open`` takes: a path string, or a file-like object rewound to its start."""
    if hasattr(path, "read"):
        path.seek(0)
        return path
    return str(path)


def probe(path) -> VideoInfo:
    """Read duration, frame rate and size without decoding. ``path``: a path or a file-like."""
    import av

    if not hasattr(path, "read"):
        path = Path(path)
        if not path.exists():
            raise VideoError(f"missing file: {path}")
        if path.stat().st_size == 0:
            raise VideoError(f"empty file: {path}")
    try:
        with av.open(_source(path)) as container:
            if not container.streams.video:
                raise VideoError(f"no video stream: {path}")
            s = container.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0)
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            elif container.duration is not None:
                duration = container.duration / 1e6
            else:
                duration = 0.0
            n = s.frames or int(round(duration * fps))
            return VideoInfo(duration, fps, n, s.codec_context.width, s.codec_context.height)
    except VideoError:
        raise
    except Exception as err:  # PyAV raises several error types for broken files
        raise VideoError(f"not a readable video: {path} ({type(err).__name__}: {err})") from err


def effective_fps(duration: float, native_fps: float, num_frames: int, fps: float) -> float:
    """The rate at which ``num_frames`` fit into ``duration`` (the short-clip policy)."""
    if native_fps <= 0:
        raise VideoError("unknown frame rate")
    available = int(round(duration * native_fps))
    if num_frames > available:
        raise ClipTooShort(f"{num_frames} frames needed, the video has about {available}")
    fps = min(fps, native_fps)
    span = (num_frames - 1) / fps
    last_time = (available - 1) / native_fps
    if span > last_time + 1e-6:
        fps = min(native_fps, (num_frames - 1) / last_time)
    return fps


def frame_indices(
    native_fps: float, num_frames: int, fps: float, start_index: int = 0
) -> np.ndarray:
    """Source frame indices of ``num_frames`` frames at ``fps`` from a constant-rate video: the
    frame on screen at each time ``i / fps`` (what :func:`decode_clip` takes)."""
    stride = native_fps / fps
    return start_index + np.floor(np.arange(num_frames) * stride + 1e-6).astype(np.int64)


def _rotate(img: np.ndarray, degrees: int) -> np.ndarray:
    k = (-int(round(degrees / 90))) % 4  # display matrix rotation is counter-clockwise
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def decode_clip(
    path,
    num_frames: int = DEFAULT_NUM_FRAMES,
    fps: float = DEFAULT_FPS,
    start: float | None = None,
    rng: np.random.Generator | None = None,
    timeout: float = 30.0,
) -> Clip:
    """Decode ``num_frames`` frames at ``fps`` starting at ``start`` seconds (random if None).

    ``path`` is a file path or a file-like object (e.g. ``io.BytesIO`` of a shard member).

    Seeks to the key frame before ``start`` and decodes only up to the last frame needed.
    Raises :class:`VideoError` (or a subclass) for anything that cannot give the clip.
    """
    import av

    info = probe(path)
    use_fps = effective_fps(info.duration, info.fps, num_frames, fps)
    span = (num_frames - 1) / use_fps
    last_start = max(0.0, (info.num_frames - 1) / info.fps - span)
    if start is None:
        rng = rng or np.random.default_rng()
        start = float(rng.uniform(0, last_start)) if last_start > 0 else 0.0
    start = min(max(0.0, start), last_start)
    targets = start + np.arange(num_frames) / use_fps
    eps = 1e-3  # seconds: timestamps are rounded to the stream's time base
    deadline = time.monotonic() + timeout

    frames, stamps = [], []
    try:
        with av.open(_source(path), timeout=timeout) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if start > 0:
                container.seek(
                    int(start / stream.time_base), stream=stream, backward=True, any_frame=False
                )
            prev = None
            i = 0
            for frame in container.decode(stream):
                if time.monotonic() > deadline:
                    raise DecodeTimeout(f"decoding took longer than {timeout}s: {path}")
                t = frame.time if frame.time is not None else 0.0
                # every target time before this frame's timestamp shows the previous frame
                while i < num_frames and prev is not None and t > targets[i] + eps:
                    frames.append(prev[0])
                    stamps.append(prev[1])
                    i += 1
                if i >= num_frames:
                    break
                prev = (
                    _rotate(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0) or 0),
                    t,
                )
            while i < num_frames and prev is not None:  # the video ended: hold its last frame
                if targets[i] - prev[1] > 2 / info.fps:
                    break
                frames.append(prev[0])
                stamps.append(prev[1])
                i += 1
    except VideoError:
        raise
    except Exception as err:
        raise VideoError(f"decode failed: {path} ({type(err).__name__}: {err})") from err
    if len(frames) < num_frames:
        raise ClipTooShort(f"decoded {len(frames)} of {num_frames} frames (truncated?): {path}")
    return Clip(np.stack(frames), np.asarray(stamps), use_fps)


def decode_all(path: str | Path) -> np.ndarray:
    """Every frame of a video, uint8 (N, H, W, 3) (the slow baseline for benchmarks)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
