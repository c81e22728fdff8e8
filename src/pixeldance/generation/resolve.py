"""Resolving a user's choices against a model's generation defaults: the one place that checks
the ranges of tau, steps, frames, guidance, size and where generation runs, for every entry
point (``pipe(...)``, ``pixeldance generate`` and ``story``, the demo, ``pixeldance eval``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..devices import Placement, PlacementError, resolve_placement
from .config import (
    SCHEDULERS,
    GenerationConfig,
    Geometry,
    SettingError,
    _is_int,
    _is_number,
    interval_problem,
)

# Caps that refuse a request before it exhausts a machine; --max-pixels raises the size cap.
MAX_STEPS = 1000  # the training schedule's T (paper, sec. 3.2): more steps than timesteps
MAX_FRAMES = 256
MIN_FPS, MAX_FPS = 0.1, 120.0  # what video players show as motion; a GIF allows at most 50
DEFAULT_MAX_PIXELS = 1024 * 1024  # per frame: four times the paper's 512 x 512 area, 16x 256^2


@dataclass(frozen=True)
class GenerationSettings:
    """Resolved, checked settings for one generation, in the pipeline's argument names: pass
    them as ``pipe(..., settings=settings)``. ``scheduler`` is a name from :data:`SCHEDULERS`
    or None (the model's own); ``placement`` the device, dtype and offload
    (``placement.apply(pipe)`` puts a pipeline there, ``placement.generator(seed)`` makes the
    generator that draws its noise); ``shot_taus`` the tau of each shot of a story."""

    num_inference_steps: int
    guidance_scale: float
    guidance_interval: tuple[int, int] | None
    tau: int
    num_frames: int
    fps: float
    height: int
    width: int
    instruction_noise: int
    cache_interval: int | None = None
    scheduler: str | None = None
    placement: Placement = Placement()
    shot_taus: tuple[int, ...] = ()
    shot_frames: tuple[int, ...] = ()


def resolve(
    config: GenerationConfig,
    geometry: Geometry,
    *,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    guidance_interval: tuple[int, int] | None = None,
    tau: int | None = None,
    num_frames: int | None = None,
    fps: float | None = None,
    instruction_noise: int | None = None,
    cache_interval: int | None = None,
    aspect: str | None = None,
    height: int | None = None,
    width: int | None = None,
    scheduler: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    offload: bool = False,
    placement: Placement | None = None,
    shot_taus: Sequence[int | None] = (),
    shot_frames: Sequence[int | None] = (),
    max_steps: int = MAX_STEPS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> GenerationSettings:
    """Merge a user's choices (None: the model's default) with a model's settings and check them.

    Tau: a tau the user gives (and each of ``shot_taus`` not None; likewise ``shot_frames``) must lie in [0, steps]; the
    model's default tau is capped at the steps (fewer steps than the default tau guide every
    step with the last frame). Size: an explicit height or width wins over ``aspect``, which
    wins over the model's default size (its training size); both must be positive multiples of
    ``geometry.multiple``, and height x width at most ``max_pixels``; steps at most
    ``max_steps``, frames at most :data:`MAX_FRAMES`. Where it runs: ``placement`` as given,
    else ``device`` and ``dtype`` (None: ``"auto"``) and ``offload`` through
    :func:`pixeldance.devices.resolve_placement`. Raises :class:`SettingError` naming the
    setting (and the model's file, for a default that is out of range).
    """

    def pick(name, choice):
        if choice is not None:
            return choice, name
        return getattr(config, name), f"{config.source}: {name}"

    def bad(name, what, message):
        raise SettingError(name, f"{what} {message}")

    steps, what = pick("num_inference_steps", num_inference_steps)
    if not _is_int(steps) or not 1 <= steps <= max_steps:
        bad("num_inference_steps", what, f"must be an integer from 1 to {max_steps}, got {steps!r}")
    guidance, what = pick("guidance_scale", guidance_scale)
    if not _is_number(guidance) or guidance < 0:
        bad("guidance_scale", what, f"must be a number >= 0, got {guidance!r}")
    interval, what = pick("guidance_interval", guidance_interval)
    interval = None if interval is None else tuple(interval)
    if interval_problem(interval):
        bad("guidance_interval", what, interval_problem(interval))
    if tau is None:
        if not _is_int(config.tau) or config.tau < 0:
            bad("tau", f"{config.source}: tau", f"must be an integer >= 0, got {config.tau!r}")
        tau = min(config.tau, steps)
    taus = [tau if t is None else t for t in shot_taus]
    for name, t in [("tau", tau), *((f"shot {k + 1}: tau", t) for k, t in enumerate(taus))]:
        if not _is_int(t) or not 0 <= t <= steps:
            bad("tau", name, f"must be between 0 and the steps ({steps}), got {t!r}")
    frames, what = pick("num_frames", num_frames)
    shot_frames = [frames if f is None else f for f in shot_frames]
    for name, f in [
        (what, frames),
        *((f"shot {k + 1}: num_frames", f) for k, f in enumerate(shot_frames)),
    ]:
        if not _is_int(f) or not 2 <= f <= MAX_FRAMES:
            bad("num_frames", name, f"must be an integer from 2 to {MAX_FRAMES}, got {f!r}")
    fps, what = pick("fps", fps)
    if not _is_number(fps) or not MIN_FPS <= fps <= MAX_FPS:
        bad("fps", what, f"must be a number from {MIN_FPS} to {MAX_FPS}, got {fps!r}")
    noise, what = pick("instruction_noise", instruction_noise)
    if not _is_int(noise) or not 0 <= noise < 1000:  # a diffusion step (paper, sec. 3.2: T)
        bad("instruction_noise", what, f"must be a diffusion step from 0 to 999, got {noise!r}")
    cache, what = pick("cache_interval", cache_interval)
    if cache is not None and (not _is_int(cache) or cache < 1):
        bad("cache_interval", what, f"must be an integer >= 1 (or unset), got {cache!r}")
    if scheduler is not None and scheduler not in SCHEDULERS:
        bad("scheduler", "unknown scheduler", f"{scheduler!r}; use one of {', '.join(SCHEDULERS)}")
    height, width = _size(config, geometry, aspect, height, width, max_pixels)
    if placement is None:
        try:
            placement = resolve_placement(device, dtype, offload)
        except PlacementError as err:
            raise SettingError(err.name, str(err)) from err
    return GenerationSettings(
        num_inference_steps=steps,
        guidance_scale=float(guidance),
        guidance_interval=interval,
        tau=tau,
        num_frames=frames,
        fps=float(fps),
        height=height,
        width=width,
        instruction_noise=noise,
        cache_interval=cache,
        scheduler=scheduler,
        placement=placement,
        shot_taus=tuple(taus),
        shot_frames=tuple(shot_frames),
    )


def _size(config, geometry, aspect, height, width, max_pixels) -> tuple[int, int]:
    """(height, width): explicit ones, else ``aspect``'s, else the model's training size (the
    first of its ``sizes``; an SD-inflated UNet has no ``sample_size`` to say it), else the
    UNet's default; checked."""
    if aspect is not None:
        base_h, base_w = config.size_for(aspect, geometry)
    elif config.sizes:  # the size it trained at: its main (first) bucket's, as from_training lists
        base_h, base_w = next(iter(config.sizes.values()))
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
    return height, width


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
