"""Resolving a user's choices against a model's generation defaults: one place that checks
tau, steps, frames, size, guidance and where generation runs, for every entry point."""

from __future__ import annotations

from dataclasses import dataclass

from ..devices import Placement, PlacementError, resolve_placement
from .config import (
    SCHEDULERS,
    GenerationConfig,
    Geometry,
    SettingError,
    _check_tau,
    _is_int,
    _is_number,
    interval_problem,
)

# Caps that refuse a request before it exhausts a machine; --max-pixels raises the size cap.
MAX_STEPS = 1000  # the training schedule's T (paper, sec. 3.2): more steps than timesteps
MAX_FRAMES = 256
DEFAULT_MAX_PIXELS = 1024 * 1024  # per frame: four times the paper's 512 x 512 area, 16x 256^2


@dataclass(frozen=True)
class GenerationSettings:
    """Resolved, checked settings for one generation: pass ``pipeline_kwargs()`` to the
    pipeline. ``scheduler`` is a name from :data:`SCHEDULERS` or None (the model's own);
    ``placement`` the device, dtype and offload (``placement.apply(pipe)`` puts a pipeline
    there, ``placement.generator(seed)`` makes the generator that draws its noise)."""

    steps: int
    guidance: float
    guidance_interval: tuple[int, int] | None
    tau: int
    frames: int
    fps: float
    height: int
    width: int
    instruction_noise: int
    scheduler: str | None = None
    placement: Placement = Placement()

    def pipeline_kwargs(self) -> dict:
        """Keyword arguments for ``PixelDancePipeline.__call__`` (and ``generate_story``)."""
        return dict(
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            guidance_interval=self.guidance_interval,
            tau=self.tau,
            num_frames=self.frames,
            height=self.height,
            width=self.width,
            instruction_noise=self.instruction_noise,
        )

    def tau_for(self, tau: int | None, where: str = "tau") -> int:
        """A shot's own tau, checked against the steps (None: the resolved default)."""
        if tau is None:
            return self.tau
        _check_tau(tau, self.steps, where)
        return tau


def resolve(
    config: GenerationConfig,
    geometry: Geometry,
    *,
    steps: int | None = None,
    guidance: float | None = None,
    guidance_interval: tuple[int, int] | None = None,
    tau: int | None = None,
    frames: int | None = None,
    fps: float | None = None,
    aspect: str | None = None,
    height: int | None = None,
    width: int | None = None,
    scheduler: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    offload: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> GenerationSettings:
    """Merge a user's choices (None: the model's default) with a model's settings and check them.

    Tau: a tau the user gives must lie in [0, steps]; the model's default tau is capped at the
    steps (fewer steps than the default tau guide every step with the last frame). Size: an
    explicit height or width wins over ``aspect``, which wins over the model's default size
    (its training size);
    both must be positive multiples of ``geometry.multiple``, and height x width at most
    ``max_pixels``; steps at most :data:`MAX_STEPS`, frames at most :data:`MAX_FRAMES`. Device
    and dtype (None:
    ``"auto"``) and offload: :func:`pixeldance.devices.resolve_placement`. Raises
    :class:`SettingError`.
    """
    steps = config.steps if steps is None else steps
    if not _is_int(steps) or not 1 <= steps <= MAX_STEPS:
        raise SettingError(
            "steps", f"steps must be an integer from 1 to {MAX_STEPS}, got {steps!r}"
        )
    guidance = config.guidance if guidance is None else guidance
    if not _is_number(guidance) or guidance < 0:
        raise SettingError("guidance", f"guidance must be a number >= 0, got {guidance!r}")
    interval = config.guidance_interval if guidance_interval is None else guidance_interval
    if interval is not None:
        interval = tuple(interval)
        problem = interval_problem(interval)
        if problem:
            raise SettingError("guidance_interval", f"guidance_interval {problem}")
    if tau is None:
        tau = min(config.tau, steps)
    else:
        _check_tau(tau, steps, "tau")
    frames = config.frames if frames is None else frames
    if not _is_int(frames) or not 2 <= frames <= MAX_FRAMES:
        raise SettingError(
            "frames", f"frames must be an integer from 2 to {MAX_FRAMES}, got {frames!r}"
        )
    fps = config.fps if fps is None else fps
    if not _is_number(fps) or fps <= 0:
        raise SettingError("fps", f"fps must be a number > 0, got {fps!r}")
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise SettingError(
            "scheduler", f"unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}"
        )
    if aspect is not None:
        base_h, base_w = config.size_for(aspect, geometry)
    else:
        base_h, base_w = geometry.default_size
    height = base_h if height is None else height
    width = base_w if width is None else width
    for name, value in (("height", height), ("width", width)):
        check_size(name, value, geometry.multiple)
    if height * width > max_pixels:
        raise SettingError(
            "max_pixels",
            f"{height}x{width} is {height * width:,} pixels a frame, over the cap of "
            f"{max_pixels:,}; choose a smaller size (or raise --max-pixels if this machine has "
            "the memory)",
        )
    try:
        placement = resolve_placement(device, dtype, offload)
    except PlacementError as err:
        raise SettingError(err.name, str(err)) from err
    return GenerationSettings(
        steps=steps,
        guidance=float(guidance),
        guidance_interval=interval,
        tau=tau,
        frames=frames,
        fps=float(fps),
        height=height,
        width=width,
        instruction_noise=config.instruction_noise,
        scheduler=scheduler,
        placement=placement,
    )


def check_prompt(prompt, name: str = "prompt") -> str:
    """A prompt must be text that encodes as UTF-8 (a command line can hand over bytes that do
    not, as lone surrogates); returns it."""
    if not isinstance(prompt, str):
        raise SettingError(name, f"{name} must be text, got {type(prompt).__name__}")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        raise SettingError(
            name, f"{name} is not valid UTF-8 text (byte {err.start}); check its encoding"
        ) from err
    return prompt


def check_size(name: str, value, multiple: int) -> None:
    """A height or width must be a positive multiple of ``multiple``; the error names the
    nearest valid sizes."""
    if not _is_int(value) or value <= 0:
        raise SettingError(name, f"{name} must be a positive integer, got {value!r}")
    if value % multiple:
        lo = max(multiple, value // multiple * multiple)
        hi = (value // multiple + 1) * multiple
        raise SettingError(
            name,
            f"{name}={value} is not a multiple of {multiple}; nearest valid sizes: {lo} or {hi}",
        )
