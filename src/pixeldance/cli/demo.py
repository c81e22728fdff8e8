"""The web demo's requests: text + first frame (+ last frame) -> video, and stories of shots.

``pixeldance demo [--model PATH] [--port N]`` (needs the ``demo`` extra: ``pip install
"pixeldance[demo]"``). One generation runs at a time; at most ``--queue`` requests wait, and a
request beyond that is refused rather than piling up. Inputs are bounded (prompt length,
steps, image size, shots) and a bad input is answered with a message saying what to change.

:class:`DemoRunner` holds everything but the page (:mod:`pixeldance.cli.demo_page`), so it is
usable (and tested) without Gradio. Videos are written enlarged by whole pixels (each model
pixel repeated into a block, :func:`display_scale`), then H.264-compressed: the shipped model's
clips are 48 pixels high.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from PIL import Image

from ..generation import (
    GenerationConfig,
    GenerationSettings,
    Geometry,
    SettingError,
    check_prompt,
)

MAX_PROMPT_CHARS = 300
MAX_STEPS = 100
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_SHOTS = 6
UPLOAD_ADVICE = "upload a PNG, JPEG or WebP image"
DISPLAY_SIZE = 384  # long side of a shown video, reached by a whole-pixel (nearest) upscale
# a held-out Dancing Shapes clip (seed base 7, never trained on): "A red circle glides right on a
# checkered background"; its first and last frames are the examples' instructions
EXAMPLE_CLIP_SEED = 7_023_646


class DemoInputError(ValueError):
    """A request the user can fix (shown to them as the message)."""


class DemoRunner:
    """Checks a request, runs the pipeline, writes an mp4 and returns its path.

    Args:
        model: pipeline folder; None uses the shipped PixelDance-Shapes model.
        out_dir: where videos go (default: a new temporary folder).
        device, dtype, offload: where the model runs (None: ``"auto"``), checked here, at
            start (see :func:`pixeldance.devices.resolve_placement`).
        loras: ``(adapter path, scale)`` pairs applied to the UNet when it loads.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        out_dir: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        offload: bool = False,
        loras: list[tuple[str, float]] | tuple = (),
    ):
        from ..devices import PlacementError, resolve_placement
        from ..folders import pipeline_folder

        try:
            self.placement = resolve_placement(device, dtype, offload)
        except PlacementError as err:
            raise SettingError(err.name, str(err)) from err
        self.model = pipeline_folder(model)
        self.defaults = GenerationConfig.load(self.model)
        self.geometry = Geometry.of_folder(self.model)
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="pixeldance-demo-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.loras = list(loras)
        self._pipe = None
        self._lock = threading.Lock()  # one generation at a time, whatever the server does
        self._count = 0

    @property
    def pipe(self):
        """The pipeline, loaded on first use (by :func:`pixeldance.loading.load_pipeline`)."""
        if self._pipe is None:
            from ..loading import load_pipeline

            self._pipe = load_pipeline(self.model, self.settings(), self.defaults, self.loras)
            self._pipe.set_progress_bar_config(disable=True)
        return self._pipe

    def check(
        self, prompt, first_frame, last_frame, tau, steps, aspect, seed
    ) -> tuple[dict, GenerationSettings]:
        """The request and its resolved settings, or :class:`DemoInputError` naming the problem."""
        prompt = _prompt(prompt, "the prompt")
        first_frame = instruction_image(first_frame, "first frame")
        last_frame = instruction_image(last_frame, "last frame")
        # the tau slider can stand above the steps slider: tau counts steps, so cap it there
        steps = None if steps is None else int(steps)
        if tau is not None:
            tau = min(int(tau), self.defaults.num_inference_steps if steps is None else steps)
        settings = self.settings(num_inference_steps=steps, tau=tau, aspect=aspect)
        if last_frame is not None and settings.tau == 0:
            raise DemoInputError("a last frame needs tau > 0 to guide anything")
        if not prompt and first_frame is None:
            raise DemoInputError("give a prompt, a first frame, or both")
        request = dict(
            prompt=prompt, first_frame=first_frame, last_frame=last_frame, seed=int(seed)
        )
        return request, settings

    def settings(self, **choices) -> GenerationSettings:
        """The model's generation defaults merged with ``choices`` (see ``resolve``; at most
        :data:`MAX_STEPS` steps), on the runner's device; a bad choice is a
        :class:`DemoInputError`."""
        from ..generation import resolve

        try:
            return resolve(
                self.defaults,
                self.geometry,
                placement=self.placement,
                max_steps=MAX_STEPS,
                **choices,
            )
        except SettingError as err:
            raise DemoInputError(str(err)) from err

    def __call__(
        self,
        prompt,
        first_frame=None,
        last_frame=None,
        tau=None,
        steps=None,
        aspect="1:1",
        seed=0,
        middle_frame=None,
        middle_index=None,
        sketch_last=None,
    ) -> str:
        request, settings = self.check(prompt, first_frame, last_frame, tau, steps, aspect, seed)
        keyframes = self.keyframes(request, settings, middle_frame, middle_index, sketch_last)
        with self._lock:
            result = self.pipe(
                request["prompt"],
                first_frame=request["first_frame"],
                last_frame=request["last_frame"],
                keyframes=keyframes,
                generator=settings.placement.generator(request["seed"]),
                output_type="np",
                settings=settings,
            )
            return self._write(result.frames, settings.fps)

    def keyframes(self, request, settings, middle_frame, middle_index, sketch_last) -> list:
        """A middle keyframe (image at ``middle_index``) and a sketch ending, checked against
        the model (:func:`pixeldance.keyframes.check_keyframes`); DemoInputError if wrong."""
        from ..keyframes import Keyframe, KeyframeError, check_keyframes, folder_layout

        extra = []
        middle = instruction_image(middle_frame, "middle keyframe")
        if middle is not None:
            index = settings.num_frames // 2 if middle_index is None else int(middle_index)
            extra.append(Keyframe(index, image=middle))
        sketch = instruction_image(sketch_last, "sketch ending")
        if sketch is not None:
            extra.append(Keyframe(-1, image=sketch, kind="sketch"))
        first = request["first_frame"]
        given = [Keyframe(0, image=first)] if first is not None else []
        if request["last_frame"] is not None:
            given.append(Keyframe(-1, image=request["last_frame"], tau=settings.tau))
        try:
            check_keyframes(
                [*given, *extra],
                settings.num_frames,
                settings.num_inference_steps,
                folder_layout(self.model),
                settings.tau,
            )
        except KeyframeError as err:
            raise DemoInputError(str(err)) from err
        return extra

    def story(self, first_frame, shots, steps=None, seed=0) -> str:
        """A long video from ``shots``, ``[(prompt, last_frame or None), ...]`` (rows with no
        prompt and no last frame are skipped), each shot starting from the last frame of the one
        before; the first from ``first_frame`` if given. Returns the mp4's path."""
        from ..pipeline import Shot

        rows = [(p, last) for p, last in shots if (p or "").strip() or last is not None]
        if not rows:
            raise DemoInputError("give at least one shot: a prompt, or a last frame")
        if len(rows) > MAX_SHOTS:
            raise DemoInputError(f"{len(rows)} shots; keep it to {MAX_SHOTS}")
        first = instruction_image(first_frame, "first frame")
        story = [
            Shot(
                _prompt(p, f"shot {k + 1}'s prompt"),
                instruction_image(last, f"shot {k + 1}'s last frame"),
            )
            for k, (p, last) in enumerate(rows)
        ]
        steps = None if steps is None else int(steps)
        settings = self.settings(num_inference_steps=steps, shot_taus=[None] * len(story))
        with self._lock:
            result = self.pipe.generate_story(
                story,
                first_frame=first,
                generator=settings.placement.generator(int(seed)),
                output_type="np",
                settings=settings,
            )
            return self._write(result.frames, settings.fps)

    def _write(self, frames, fps: float) -> str:
        """Frames to the next mp4 in ``out_dir``, scaled up by whole pixels to about
        :data:`DISPLAY_SIZE` on the long side."""
        from ..files import write_video
        from ..images import frames_to_uint8

        video = frames_to_uint8(frames)  # (F, H, W, 3)
        k = display_scale(*video.shape[1:3])
        if k > 1:
            video = video.repeat(k, axis=1).repeat(k, axis=2)
        self._count += 1
        out = self.out_dir / f"video-{self._count:05d}.mp4"
        write_video(video, out, fps=fps)
        return str(out)

    def examples(self) -> list[list]:
        """Requests that show the model at work, as rows of the page's inputs (prompt, first
        frame, last frame, tau, steps, aspect, seed): a first and last frame pair, a text-only
        prompt and a 16:9 one. The pair's images are written to ``out_dir``."""
        first, last = example_frames(self.out_dir)
        d, steps = self.defaults, self.defaults.num_inference_steps
        return [
            # tau = all the steps: the clip ends on the last frame
            ["a red circle moves to the right", str(first), str(last), steps, steps, "1:1", 0],
            ["a blue square moves up", None, None, d.tau, steps, "1:1", 1],
            ["a yellow triangle slides to the left", None, None, d.tau, steps, "16:9", 2],
        ]


def display_scale(height: int, width: int) -> int:
    """How many screen pixels a shown video gives each model pixel, along each side: the
    largest whole number that keeps the long side within :data:`DISPLAY_SIZE` (at least 1)."""
    return max(1, DISPLAY_SIZE // max(height, width))


def _prompt(prompt, name: str) -> str:
    """A prompt stripped, bounded in length and checked to be UTF-8 text."""
    prompt = (prompt or "").strip()
    if len(prompt) > MAX_PROMPT_CHARS:
        raise DemoInputError(
            f"{name} is {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS}"
        )
    try:
        return check_prompt(prompt, name)
    except SettingError as err:
        raise DemoInputError(str(err)) from err


def instruction_image(image, name: str) -> Image.Image | None:
    """An uploaded instruction as an RGB image: a PIL image, or the path Gradio saved the upload
    to. Anything else, a damaged file, or more than :data:`MAX_IMAGE_PIXELS`, is refused with its
    name and what to do instead; a file's size is read from its header before it is decoded."""
    if image is None:
        return None
    if isinstance(image, (str, Path)):
        check_image_file(image, name)
        from ..files import read_image

        try:
            return read_image(image)
        except (*_PIL_ERRORS, FileNotFoundError) as err:
            raise DemoInputError(
                f"the {name} is a damaged image: {Path(image).name} (it could not be decoded); "
                "save it again as PNG or JPEG"
            ) from err
    if not isinstance(image, Image.Image):
        raise DemoInputError(f"the {name} is not an image")
    _check_pixels(image.size, name)
    return image


# what Pillow raises on files it cannot read (a DecompressionBombError is not an OSError)
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def check_image_file(path: str | Path, name: str, shown: str | None = None) -> tuple[int, int]:
    """The (width, height) an image file declares, read from its header only (nothing decoded).

    Raises :class:`DemoInputError` naming ``name`` and the file (``shown``, default the path's
    name) if it is not a regular file, not an image Pillow knows, or declares more than
    :data:`MAX_IMAGE_PIXELS` (a decompression bomb is refused here, before any decoding).
    """
    path = Path(path)
    shown = shown or path.name
    if not path.is_file():  # missing, a folder, or a FIFO or device that would block a read
        raise DemoInputError(f"the {name} is not an image: {shown}; {UPLOAD_ADVICE}")
    try:
        with Image.open(path) as im:
            size = im.size
    except Image.DecompressionBombError as err:  # Pillow's own limit, far above ours
        raise DemoInputError(
            f"the {name} declares more than {2 * (Image.MAX_IMAGE_PIXELS or 0) // 1_000_000} "
            f"megapixels ({shown}); use one under {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        ) from err
    except _PIL_ERRORS as err:
        raise DemoInputError(f"the {name} is not an image: {shown}; {UPLOAD_ADVICE}") from err
    _check_pixels(size, name, shown)
    return size


def _check_pixels(size: tuple[int, int], name: str, shown: str | None = None) -> None:
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        where = f" ({shown})" if shown else ""
        raise DemoInputError(
            f"the {name}{where} is {size[0]}x{size[1]}; keep it under "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels (e.g. 1024x1024)"
        )


def example_frames(folder: str | Path) -> tuple[Path, Path]:
    """The first and last frames of the example clip (:data:`EXAMPLE_CLIP_SEED`), rendered from
    the Dancing Shapes world at its 128x128 into ``folder``."""
    from ..data.shapes import render_clip, sample_clip

    folder = Path(folder)
    frames = render_clip(sample_clip(EXAMPLE_CLIP_SEED, aspect="1:1"))
    paths = folder / "red_circle.png", folder / "red_circle_end.png"
    for path, frame in zip(paths, (frames[0], frames[-1]), strict=True):
        Image.fromarray(frame).save(path)
    return paths
