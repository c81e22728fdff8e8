"""A contact sheet of a generated clip: the instructions on the left, then every other frame
(and the last), scaled up by whole pixels (nearest neighbour) so that the small frames stay sharp.

The model card's picture is the README's first command, drawn like this:

    pixeldance generate --prompt "a red circle moves to the right" \\
        --first-frame examples/red_circle.png --last-frame examples/red_circle_end.png \\
        --tau 50 --out /tmp/red_circle_frames
    python examples/contact_sheet.py /tmp/red_circle_frames --out docs/red_circle_sheet.png \\
        --first-frame examples/red_circle.png --last-frame examples/red_circle_end.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from pixeldance.files import atomic_path, read_image


def read_frames(source: Path) -> np.ndarray:
    """uint8 (N, H, W, 3) from a folder of PNG frames (in name order) or a video file."""
    if source.is_dir():
        paths = sorted(source.glob("*.png"))
        if not paths:
            raise SystemExit(f"no .png frames in {source}")
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    from pixeldance.data.video import decode_all

    return decode_all(source)


def sheet(frames: np.ndarray, every: int, scale: int, instructions: list[np.ndarray]) -> np.ndarray:
    """One row: the instructions (resized to the frame size), a gap, then every ``every``-th
    frame from the first, and the last frame always."""
    h, w = frames.shape[1:3]
    gap = np.full((h, max(2, w // 8), 3), 255, np.uint8)
    line = gap[:, :1]
    row = []
    for image in instructions:
        row += [np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC)), line]
    if row:
        row[-1] = gap
    keep = sorted({*range(0, len(frames), every), len(frames) - 1})
    for k in keep:
        row += [frames[k], line]
    picture = np.concatenate(row[:-1], axis=1)
    return np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path, help="a folder of PNG frames, or an .mp4 / .gif")
    parser.add_argument("--out", type=Path, required=True, help="output .png")
    parser.add_argument("--first-frame", type=Path, help="shown first, resized to the clip")
    parser.add_argument("--last-frame", type=Path, help="shown second, resized to the clip")
    parser.add_argument("--every", type=int, default=2, help="keep every n-th frame (default 2)")
    parser.add_argument("--scale", type=int, default=3, help="pixel zoom (default 3)")
    args = parser.parse_args()
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out must end in .png, got {args.out}")
    if args.every < 1 or args.scale < 1:
        parser.error("--every and --scale must be at least 1")
    frames = read_frames(args.clip)
    instructions = [np.asarray(read_image(p)) for p in (args.first_frame, args.last_frame) if p]
    picture = sheet(frames, args.every, args.scale, instructions)
    with atomic_path(args.out) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")


if __name__ == "__main__":
    main()
