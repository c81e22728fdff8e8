"""A Gradio web demo that only calls the pipeline: text + first frame (+ last frame) -> video.

``pixeldance demo [--model PATH] [--port N]`` (needs the ``demo`` extra: ``pip install
"pixeldance[demo]"``). One generation runs at a time; at most ``--queue`` requests wait, and a
request beyond that is refused rather than piling up. Inputs are bounded (prompt length,
steps, image size) and a bad input is answered with a message saying what to change.

:class:`DemoRunner` holds everything but the page, so it is usable (and tested) without Gradio.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from PIL import Image

from .generation import (
    ASPECTS,
    GenerationConfig,
    GenerationSettings,
    Geometry,
    SettingError,
    check_prompt,
)

MAX_PROMPT_CHARS = 300
MAX_STEPS = 100
MAX_IMAGE_PIXELS = 4096 * 4096


class DemoInputError(ValueError):
    """A request the user can fix (shown to them as the message)."""


class DemoRunner:
    """Checks a request, runs the pipeline, writes an mp4 and returns its path.

    Args:
        model: pipeline folder; None uses the shipped PixelDance-Shapes model.
        out_dir: where videos go (default: a new temporary folder).
        device, dtype, offload: where the model runs (None: ``"auto"``), checked here, at
            start (see :func:`pixeldance.devices.resolve_placement`).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        out_dir: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        offload: bool = False,
    ):
        from .devices import PlacementError, resolve_placement
        from .folders import pipeline_folder

        try:
            self.placement = resolve_placement(device, dtype, offload)
        except PlacementError as err:
            raise SettingError(err.name, str(err)) from err
        self.model = pipeline_folder(model)
        self.defaults = GenerationConfig.load(self.model)
        self.geometry = Geometry.of_folder(self.model)
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="pixeldance-demo-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._pipe = None
        self._lock = threading.Lock()  # one generation at a time, whatever the server does
        self._count = 0

    @property
    def pipe(self):
        if self._pipe is None:
            from .pipeline import PixelDancePipeline

            pipe = PixelDancePipeline.from_pretrained(self.model, dtype=self.placement.torch_dtype)
            self._pipe = self.placement.apply(pipe)
            self._pipe.set_progress_bar_config(disable=True)
        return self._pipe

    def check(
        self, prompt, first_frame, last_frame, tau, steps, aspect, seed
    ) -> tuple[dict, GenerationSettings]:
        """The request and its resolved settings, or :class:`DemoInputError` naming the problem."""
        prompt = (prompt or "").strip()
        if len(prompt) > MAX_PROMPT_CHARS:
            raise DemoInputError(
                f"the prompt is {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS}"
            )
        steps = self.defaults.steps if steps is None else int(steps)
        if not 1 <= steps <= MAX_STEPS:
            raise DemoInputError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
        first_frame = _image(first_frame, "first frame")
        last_frame = _image(last_frame, "last frame")
        # the tau slider can stand above the steps slider: tau counts steps, so cap it there
        tau = None if tau is None else min(int(tau), steps)
        try:
            check_prompt(prompt)
            settings = self.settings(steps=steps, tau=tau, aspect=aspect)
        except SettingError as err:
            raise DemoInputError(str(err)) from err
        if last_frame is not None and settings.tau == 0:
            raise DemoInputError("a last frame needs tau > 0 to guide anything")
        if not prompt and first_frame is None:
            raise DemoInputError("give a prompt, a first frame, or both")
        request = dict(
            prompt=prompt, first_frame=first_frame, last_frame=last_frame, seed=int(seed)
        )
        return request, settings

    def settings(self, **choices) -> GenerationSettings:
        """The model's generation defaults merged with ``choices`` (see ``resolve``), on the
        runner's device."""
        from .generation import resolve

        p = self.placement
        placed = dict(device=p.device, dtype=p.dtype, offload=p.offload)
        return resolve(self.defaults, self.geometry, **placed, **choices)

    def __call__(
        self, prompt, first_frame=None, last_frame=None, tau=None, steps=None, aspect="1:1", seed=0
    ) -> str:
        from .files import write_video
        from .pipeline import frames_to_uint8

        request, settings = self.check(prompt, first_frame, last_frame, tau, steps, aspect, seed)
        with self._lock:
            result = self.pipe(
                request["prompt"],
                first_frame=request["first_frame"],
                last_frame=request["last_frame"],
                generator=settings.placement.generator(request["seed"]),
                output_type="np",
                **settings.pipeline_kwargs(),
            )
            self._count += 1
            out = self.out_dir / f"video-{self._count:05d}.mp4"
            write_video(frames_to_uint8(result.frames), out, fps=settings.fps)
        return str(out)


def _image(image, name: str) -> Image.Image | None:
    """An uploaded instruction as an RGB image: a PIL image, or the path Gradio saved the upload
    to. Anything else, or more than :data:`MAX_IMAGE_PIXELS`, is refused with its name."""
    if image is None:
        return None
    if isinstance(image, (str, Path)):
        from PIL import UnidentifiedImageError

        try:
            with Image.open(image) as im:
                size = im.size
        except (UnidentifiedImageError, OSError) as err:
            raise DemoInputError(f"the {name} is not an image: {Path(image).name}") from err
    elif isinstance(image, Image.Image):
        size = image.size
    else:
        raise DemoInputError(f"the {name} is not an image")
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise DemoInputError(
            f"the {name} is {size[0]}x{size[1]}; keep it under "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        )
    if isinstance(image, Image.Image):
        return image
    from .files import read_image

    try:
        return read_image(image)
    except (OSError, ValueError) as err:
        raise DemoInputError(f"the {name} is not an image: {Path(image).name}") from err


def build_app(runner: DemoRunner, queue_size: int = 8):
    """The Gradio page around ``runner`` with a bounded queue (one generation at a time)."""
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError(
            'the demo needs Gradio: pip install "pixeldance[demo]" (or pip install gradio)'
        ) from err

    d = runner.defaults

    def generate(prompt, first_frame, last_frame, tau, steps, aspect, seed):
        try:
            return runner(prompt, first_frame, last_frame, tau, steps, aspect, seed)
        except DemoInputError as err:
            raise gr.Error(str(err)) from err

    with gr.Blocks(title="PixelDance") as app:
        gr.Markdown(
            "# PixelDance\nA text, a first frame and an optional last frame make a video. "
            f"Model: `{runner.model.name}`."
        )
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(
                    label="prompt", max_lines=2, value="a red circle moves to the right"
                )
                with gr.Row():
                    first = gr.Image(label="first frame (optional)", type="filepath")
                    last = gr.Image(label="last frame (optional)", type="filepath")
                steps = gr.Slider(1, MAX_STEPS, value=d.steps, step=1, label="denoising steps")
                tau = gr.Slider(
                    0,
                    MAX_STEPS,
                    value=d.tau,
                    step=1,
                    label="tau: steps guided by the last frame (at most the steps)",
                )
                aspect = gr.Radio(list(ASPECTS), value="1:1", label="aspect")
                seed = gr.Number(value=0, precision=0, label="seed")
                button = gr.Button("Generate", variant="primary")
            video = gr.Video(label="video")
        button.click(generate, [prompt, first, last, tau, steps, aspect, seed], video)
    app.queue(max_size=queue_size, default_concurrency_limit=1)
    return app
