"""Dancing Shapes: a procedural video world with known ground truth.

Clips of 1-3 coloured shapes on low-saturation textured backgrounds. Each object moves in one of
8 directions, bounces, grows, shrinks or rotates; the camera may pan or zoom. Clips are written
as H.264 mp4 at a real frame rate with a WebVid-style manifest (``videoid, name, page_dir,
duration``) whose captions are made from the parameters in varied wording, plus a JSON of the
parameters per clip and captioned still images for the image batches. Deterministic per seed.

Object colours are saturated and backgrounds nearly grey, so a benchmark can track each object
by its colour and compare its motion with the caption.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from .captions import caption_for

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 50, 200),
    "orange": (245, 140, 30),
    "cyan": (40, 210, 220),
    "pink": (240, 110, 180),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star")
# shapes the world draws only when asked (make-shapes --shapes): new looks for fine-tuning
NEW_SHAPES = ("hexagon",)
# direction name -> unit vector in image coordinates (x right, y down)
DIRECTIONS = {
    "right": (1, 0),
    "left": (-1, 0),
    "up": (0, -1),
    "down": (0, 1),
    "up-right": (1, -1),
    "up-left": (-1, -1),
    "down-right": (1, 1),
    "down-left": (-1, 1),
}
MOTIONS = ("move", "move", "move", "move", "bounce", "grow", "shrink", "rotate")
# motions the world draws only when asked (make-shapes --motions): new motion words for
# fine-tuning; "fade": the object fades into the background, gone by the last frame
NEW_MOTIONS = ("fade",)
# what ``sample_clip`` may be asked to draw (make-shapes --shapes / --motions)
CHOICES = {"shape": SHAPES + NEW_SHAPES, "motion": tuple(dict.fromkeys(MOTIONS + NEW_MOTIONS))}
CAMERAS = (
    "static",
    "static",
    "static",
    "pan-left",
    "pan-right",
    "pan-up",
    "pan-down",
    "zoom-in",
    "zoom-out",
)
BACKGROUNDS = ("stripes", "checker", "gradient", "blobs")
# (height, width) of written videos: square, 16:9 landscape, 9:16 portrait
FRAME_SIZES = {"1:1": (128, 128), "16:9": (112, 192), "9:16": (192, 112)}


@dataclass
class ShapeObject:
    shape: str
    colour: str
    motion: str  # move | bounce | grow | shrink | rotate
    direction: str | None  # for "move"
    start: tuple[float, float]  # centre (x, y) as fractions of width and height
    size: float  # radius as a fraction of min(H, W)
    travel: float  # distance moved over the clip, as a fraction of min(H, W)


@dataclass
class ShapesClip:
    videoid: str
    seed: int
    aspect: str
    height: int
    width: int
    fps: float
    num_frames: int
    background: str
    bg_colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    camera: str
    objects: list[ShapeObject] = field(default_factory=list)
    caption: str = ""


# ---------------------------------------------------------------------- sampling
def sample_clip(
    seed: int,
    aspect: str | None = None,
    fps: float = 24.0,
    seconds: float = 4.5,
    shapes: tuple[str, ...] | None = None,
    motions: tuple[str, ...] | None = None,
) -> ShapesClip:
    """Draw a clip's parameters from ``seed`` (deterministic); ``shapes``: the shapes to draw
    from (default :data:`SHAPES`), ``motions``: the motions, a name given twice drawn twice as
    often (default :data:`MOTIONS`, from :data:`MOTIONS` and :data:`NEW_MOTIONS`). With both
    defaults the same seed gives the same clip as before."""
    rng = np.random.default_rng(seed)
    aspect = aspect or str(rng.choice(list(FRAME_SIZES)))
    h, w = FRAME_SIZES[aspect]
    n_obj = int(rng.choice([1, 1, 1, 2, 2, 3]))
    colours = rng.choice(list(COLOURS), size=n_obj, replace=False)
    objects = []
    for i in range(n_obj):
        motion = str(rng.choice(motions or MOTIONS))
        pool = shapes or SHAPES
        turnable = tuple(s for s in pool if s != "circle") or pool  # a circle shows no turn
        shape = str(rng.choice(pool if motion != "rotate" else turnable))
        direction = str(rng.choice(list(DIRECTIONS))) if motion == "move" else None
        size = float(rng.uniform(0.09, 0.14))
        travel = float(rng.uniform(0.35, 0.5))
        if direction:
            dx, dy = unit_vector(direction)
            m = min(h, w)
            cx = 0.5 - dx * travel * m / w / 2 + rng.uniform(-0.05, 0.05)
            cy = 0.5 - dy * travel * m / h / 2 + rng.uniform(-0.05, 0.05)
        else:
            cx, cy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        if n_obj > 1 and not direction:  # spread still objects apart
            cx = (i + 0.5) / n_obj * 0.8 + 0.1
        objects.append(
            ShapeObject(
                shape, str(colours[i]), motion, direction, (float(cx), float(cy)), size, travel
            )
        )
    grey = rng.integers(70, 190)
    tint = rng.integers(-12, 13, size=3)
    c1 = tuple(int(np.clip(grey + t, 0, 255)) for t in tint)
    c2 = tuple(int(np.clip(grey + rng.choice([-45, 45]) + t, 0, 255)) for t in tint)
    clip = ShapesClip(
        videoid=f"shapes{seed:07d}",
        seed=seed,
        aspect=aspect,
        height=h,
        width=w,
        fps=fps,
        num_frames=int(round(seconds * fps)),
        background=str(rng.choice(BACKGROUNDS)),
        bg_colours=(c1, c2),
        camera=str(rng.choice(CAMERAS)),
        objects=objects,
    )
    clip.caption = caption_for(clip, rng)
    return clip


def unknown_choice(kind: str, names: tuple[str, ...] | None) -> str | None:
    """One line naming what in ``names`` the world does not draw (``kind``: "shape" or
    "motion", see :data:`CHOICES`), or None if it draws them all."""
    known = CHOICES[kind]
    unknown = sorted(set(names or ()) - set(known))
    if not unknown:
        return None
    return f"unknown {kind}(s) {', '.join(unknown)}; choose from {', '.join(known)}"


def unit_vector(direction: str) -> tuple[float, float]:
    """The direction's unit vector in image coordinates (x right, y down)."""
    dx, dy = DIRECTIONS[direction]
    n = math.hypot(dx, dy)
    return dx / n, dy / n


# ---------------------------------------------------------------------- rendering
def background_texture(clip: ShapesClip, h: int, w: int) -> np.ndarray:
    """A texture 1.5x the frame in each axis (room for camera moves), float (H, W, 3)."""
    rng = np.random.default_rng(clip.seed + 1)
    bh, bw = int(h * 1.5), int(w * 1.5)
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    c1, c2 = (np.array(c, np.float32) for c in clip.bg_colours)
    if clip.background == "stripes":
        period = rng.uniform(12, 24)
        angle = rng.uniform(0, math.pi)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    elif clip.background == "checker":
        s = int(rng.integers(10, 20))
        t = ((xx // s + yy // s) % 2).astype(np.float32)
    elif clip.background == "gradient":
        t = (xx / bw * rng.uniform(0.3, 1) + yy / bh * rng.uniform(0.3, 1)) / 2
    else:
        t = np.zeros((bh, bw), np.float32)
        for _ in range(6):
            cx, cy, r = rng.uniform(0, bw), rng.uniform(0, bh), rng.uniform(10, 30)
            t += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        t = np.clip(t, 0, 1)
    return c1 * (1 - t[..., None]) + c2 * t[..., None]


def _camera_view(bg: np.ndarray, clip: ShapesClip, p: float, h: int, w: int) -> np.ndarray:
    """Crop of the background at progress p in [0, 1] for the clip's camera move."""
    bh, bw = bg.shape[:2]
    cx, cy, scale = bw / 2, bh / 2, 1.0
    shift = 0.3 * p - 0.15
    if clip.camera == "pan-left":
        cx -= shift * w  # content slides right when the camera pans left
    elif clip.camera == "pan-right":
        cx += shift * w
    elif clip.camera == "pan-up":
        cy -= shift * h
    elif clip.camera == "pan-down":
        cy += shift * h
    elif clip.camera == "zoom-in":
        scale = 1.3 - 0.3 * p
    elif clip.camera == "zoom-out":
        scale = 1.0 + 0.3 * p
    vh, vw = h * scale, w * scale
    x0, y0 = int(round(cx - vw / 2)), int(round(cy - vh / 2))
    crop = bg[max(y0, 0) : y0 + int(round(vh)), max(x0, 0) : x0 + int(round(vw))]
    img = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))


def object_state(obj: ShapeObject, p: float, h: int, w: int) -> tuple[float, float, float, float]:
    """Centre (x, y) in pixels, radius in pixels and rotation in degrees at progress p."""
    m = min(h, w)
    x, y, r, rot = obj.start[0] * w, obj.start[1] * h, obj.size * m, 0.0
    if obj.motion == "move":
        dx, dy = unit_vector(obj.direction)
        x += dx * obj.travel * m * p
        y += dy * obj.travel * m * p
    elif obj.motion == "bounce":
        y -= abs(math.sin(2 * math.pi * p)) * 0.2 * m
    elif obj.motion == "grow":
        r *= 1 + p
    elif obj.motion == "shrink":
        r *= 1 - 0.5 * p
    elif obj.motion == "rotate":
        rot = 180 * p
    return x, y, r, rot


def object_opacity(obj: ShapeObject, p: float) -> float:
    """How opaque the object is at progress p: 1, or 1 - p for a fading object."""
    return 1.0 - p if obj.motion == "fade" else 1.0


def _polygon(shape: str, x: float, y: float, r: float, rot: float) -> list[tuple[float, float]]:
    if shape == "square":
        angles, radii = [45, 135, 225, 315], [r * 1.2] * 4
    elif shape == "triangle":
        angles, radii = [-90, 30, 150], [r * 1.25] * 3
    elif shape == "hexagon":
        angles, radii = [60 * k for k in range(6)], [r * 1.15] * 6
    elif shape == "diamond":
        angles, radii = [0, 90, 180, 270], [r * 1.2] * 4
    else:  # star
        angles = [-90 + 36 * k for k in range(10)]
        radii = [r * 1.3 if k % 2 == 0 else r * 0.55 for k in range(10)]
    return [
        (x + rr * math.cos(math.radians(a + rot)), y + rr * math.sin(math.radians(a + rot)))
        for a, rr in zip(angles, radii, strict=True)
    ]


def render_frame(
    clip: ShapesClip, bg: np.ndarray, p: float, h: int | None = None, w: int | None = None
) -> np.ndarray:
    """uint8 (H, W, 3) frame at progress p in [0, 1]."""
    h, w = h or clip.height, w or clip.width
    img = Image.fromarray(_camera_view(bg, clip, p, h, w))
    draw = ImageDraw.Draw(img)
    for obj in clip.objects:
        x, y, r, rot = object_state(obj, p, h, w)
        alpha = object_opacity(obj, p)
        if alpha >= 1.0:
            _draw_shape(draw, obj.shape, x, y, r, rot, COLOURS[obj.colour])
        else:  # a fading object: drawn into a mask at its opacity, then blended over the frame
            mask = Image.new("L", img.size, 0)
            _draw_shape(ImageDraw.Draw(mask), obj.shape, x, y, r, rot, round(255 * alpha))
            img.paste(COLOURS[obj.colour], mask=mask)
    return np.asarray(img)


def _draw_shape(draw, shape: str, x: float, y: float, r: float, rot: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    else:
        draw.polygon(_polygon(shape, x, y, r, rot), fill=fill)


def render_clip(clip: ShapesClip) -> np.ndarray:
    """All frames, uint8 (F, H, W, 3)."""
    bg = background_texture(clip, clip.height, clip.width)
    n = clip.num_frames
    return np.stack([render_frame(clip, bg, i / (n - 1)) for i in range(n)])


def clip_to_json(clip: ShapesClip) -> dict:
    return asdict(clip)


def clip_from_json(data: dict) -> ShapesClip:
    objects = [ShapeObject(**{**o, "start": tuple(o["start"])}) for o in data["objects"]]
    bg = tuple(tuple(c) for c in data["bg_colours"])
    return ShapesClip(**{**data, "objects": objects, "bg_colours": bg})


def is_single_mover(clip: ShapesClip) -> bool:
    """One object that moves in a direction, under a still camera."""
    return len(clip.objects) == 1 and clip.objects[0].motion == "move" and clip.camera == "static"
