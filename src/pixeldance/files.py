"""Reading images and writing videos, robustly and atomically.

Frames at this edge are uint8 ``(F, H, W, 3)``. Every write goes to a temporary name in the
destination folder and is renamed when complete, so a failure leaves no partial file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

VIDEO_SUFFIXES = (".mp4", ".gif")
# Instruction images larger than this are refused before their pixels are decoded (a small file
# can claim 20000 x 20000 pixels: a decompression bomb). 64 megapixels is 8192 x 8192.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024


def read_image(
    path: str | os.PathLike, background: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Open an image as RGB: EXIF orientation applied, transparency composited on ``background``.

    Raises FileNotFoundError for a missing path and ValueError for a file that is not an image,
    is not a regular file, or claims more than :data:`MAX_IMAGE_PIXELS` pixels (checked from its
    header, before decoding).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise ValueError(f"expected an image file, got a folder: {path}")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise ValueError(f"not a regular file (a pipe or a device?): {path}")
    limit = f"at most {MAX_IMAGE_PIXELS // (1024 * 1024)} megapixels; resize it first"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size  # read from the header; no pixel decoded yet
                if width * height > MAX_IMAGE_PIXELS:
                    raise ValueError(
                        f"image too large: {path} claims {width} x {height} pixels ({limit})"
                    )
                im.load()
                image = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as err:
        raise ValueError(f"image too large: {path} ({limit})") from err
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"not a readable image: {path} ({err})") from err
    return to_rgb(image, background)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB copy of any PIL image; alpha (RGBA, LA, P with transparency) is composited, and
    16-bit, 32-bit and float greyscale are scaled to 8 bits (not clipped)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8bit(image: Image.Image) -> Image.Image:
    """A high-bit-depth greyscale image as 8-bit "L": 16-bit values (and 32-bit integers holding
    them) are divided by 257, floats in [0, 1] multiplied by 255."""
    arr = np.asarray(image, dtype=np.float64)
    if image.mode == "F" and arr.size and arr.max() <= 1.0:
        arr = arr * 255.0
    elif image.mode != "F" or (arr.size and arr.max() > 255.0):
        arr = arr / 257.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=path.suffix + ".part", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.is_file():  # mkstemp made it private; give it the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (F, H, W, 3); got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("no frames to write")
    return frames


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the (3H/2, W) uint8 planar yuv420p layout PyAV takes.

    BT.601 limited range (what decoders assume for an untagged stream of this size), chroma
    averaged over 2x2 blocks. Done here rather than by PyAV's own rgb24 conversion because
    that one's bytes vary from run to run on some frame widths (seen on 192x112 Dancing Shapes
    clips), and make-shapes promises byte-identical files per seed.
    """
    x = frame.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def half(c):
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [
        np.clip(np.rint(p), 0, 255).astype(np.uint8).reshape(-1) for p in (y, half(cb), half(cr))
    ]
    return np.concatenate(planes).reshape(h * 3 // 2, w)


def write_mp4(frames, path: str | os.PathLike, fps: float = 8.0, crf: int = 18) -> Path:
    """Write H.264 mp4 (yuv420p, playable everywhere), byte-identical for identical input.
    H and W must be even."""
    import av

    frames = _check_frames(frames)
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even height and width; got {h}x{w}")
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in frames:
                for packet in stream.encode(
                    av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
                ):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return Path(path)


def write_gif(frames, path: str | os.PathLike, fps: float = 8.0) -> Path:
    frames = _check_frames(frames)
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=int(round(1000 / fps)),
            loop=0,
        )
    return Path(path)


def write_png_frames(frames, folder: str | os.PathLike) -> Path:
    """Write ``frame_00000.png``... into ``folder`` (made complete, then swapped into place;
    an existing ``folder`` must have passed :func:`check_output_path` with ``overwrite``)."""
    from .owned import replacing

    frames = _check_frames(frames)
    with replacing(folder) as tmp:
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / f"frame_{i:05d}.png")
    return Path(folder)


MAX_GIF_FPS = 50  # GIF delays are whole hundredths of a second, and players slow any under 0.02 s


def check_frame_rate(path: str | os.PathLike, fps: float) -> None:
    """Raise ValueError if the output format at ``path`` cannot play ``fps``."""
    if Path(path).suffix.lower() == ".gif" and fps > MAX_GIF_FPS:
        raise ValueError(
            f"a GIF plays at most {MAX_GIF_FPS} frames per second (its delays are hundredths of a "
            f"second), got --fps {fps:g}; lower --fps or write .mp4"
        )


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check an output path before any work: ``.mp4`` or ``.gif``, or a name with no suffix for
    a folder of PNG frames; and a place this process can write. An existing file is replaced
    only with ``overwrite``; an existing folder only if it holds nothing but PNG frames this
    project wrote, and with ``overwrite``. Raises ValueError saying what to change."""
    from .owned import check_destination

    path = Path(path)
    suffix = path.suffix.lower()
    if not path.stem or path.name.startswith("."):
        raise ValueError(
            f"{path} has no name before its suffix (it would be a hidden file); give a name "
            "such as clip.mp4"
        )
    if suffix and suffix not in VIDEO_SUFFIXES:
        raise ValueError(
            f"unknown output type {path.suffix!r}: use .mp4, .gif, or a folder name for PNG frames"
        )
    if suffix and path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name ending in {suffix}")
    if suffix and path.exists() and not overwrite:
        raise ValueError(f"{path} exists; pass --overwrite to replace it, or choose a new name")
    if not suffix:
        check_destination(path, "frames", overwrite)
    check_writable_place(path)
    return path


def output_bytes(path: str | os.PathLike, frames: int, height: int, width: int) -> int:
    """A generous estimate of the bytes a video of ``frames`` frames takes at ``path``: raw RGB
    for PNG frames and GIF (their worst case), a quarter of that for H.264 MP4 at CRF 18."""
    raw = frames * height * width * 3
    return raw // 4 if Path(path).suffix.lower() == ".mp4" else raw + 4096 * frames


def check_free_space(path: str | os.PathLike, needed: int) -> None:
    """Raise ValueError if the disk that would hold ``path`` has less than ``needed`` bytes
    free (found before the work, not after it)."""
    place = Path(path).absolute().parent
    while not place.exists():
        place = place.parent
    free = shutil.disk_usage(place).free
    if free < needed:
        raise ValueError(
            f"not enough free space for {path}: about {needed / 1e6:.1f} MB needed, "
            f"{free / 1e6:.1f} MB free on {place}"
        )


def check_writable_place(path: str | os.PathLike) -> None:
    """Raise ValueError unless ``path`` could be created: its nearest existing parent is a
    folder this process can write in (tried with a temporary file, which is removed)."""
    problem = writable_place_problem(path)
    if problem:
        raise ValueError(f"cannot write {path}: {problem}")


def writable_place_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` could not be created (its nearest existing parent, named as given, is a
    file or not writable), or None."""
    given = Path(path)
    place = given.parent
    while not place.absolute().exists() and place != place.parent:
        place = place.parent
    shown = place if str(place) not in ("", ".") else Path(".").absolute()
    if not place.absolute().is_dir():
        return f"{shown} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=place.absolute()):
            pass
    except OSError as err:
        return f"{shown} is not writable ({err.strerror})"
    return None


def write_video(frames, path: str | os.PathLike, fps: float = 8.0, overwrite: bool = False) -> Path:
    """Write by suffix: ``.mp4`` (H.264), ``.gif``, or no suffix for a folder of PNG frames.
    An existing output is replaced only with ``overwrite`` (see :func:`check_output_path`)."""
    path = check_output_path(path, overwrite)
    check_frame_rate(path, fps)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        return write_mp4(frames, path, fps)
    if suffix == ".gif":
        return write_gif(frames, path, fps)
    return write_png_frames(frames, path)
