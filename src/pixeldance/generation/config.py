"""A model's generation defaults on disk (``generation.json``) and the sizes it makes.

:class:`GenerationConfig` is what a model ships with, in the pipeline's argument names
(``num_inference_steps``, ``guidance_scale``, ...); :class:`Geometry` its default size and the
multiple every size must be, read from its configs without loading weights. Reading a file
checks its shape (known keys, types); the ranges of the values are checked with a user's
choices, by :func:`pixeldance.generation.resolve`. JSON only: no torch or diffusers at the top.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

GENERATION_FILE = "generation.json"
NUM_TIMESTEPS = 1000  # the diffusion schedule's T (paper, sec. 3.2); guidance intervals lie in it
# the aspect ratios (width : height) that generate, story and the demo offer
ASPECTS = ("1:1", "16:9", "9:16")
# sampler names the command line offers -> diffusers scheduler classes
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
}


# names generation.json files written before the pipeline's argument names were used
EARLIER_KEYS = {
    "steps": "num_inference_steps",
    "guidance": "guidance_scale",
    "frames": "num_frames",
}


class SettingError(ValueError):
    """A generation setting out of range. ``name`` is the setting (``"tau"``,
    ``"num_inference_steps"``...),
    so each entry point can name it its own way (``--tau`` on the command line)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@dataclass
class GenerationConfig:
    """The generation defaults of one model (its ``generation.json``).

    Fields absent from the file keep these generic defaults, which are also what a folder
    without the file gets. ``source`` names the file (for messages; not saved).
    """

    num_inference_steps: int = 50  # denoising steps
    guidance_scale: float = 5.0  # classifier-free guidance scale on the text (1: none)
    # guide only steps whose timestep lies in [low, high]; None: every step
    guidance_interval: tuple[int, int] | None = None
    # the last frame guides the first tau denoising steps (paper, sec. 3.3; its figures use 25)
    tau: int = 25
    num_frames: int = 16  # paper, sec. 4.1: 16-frame clips
    fps: float = 8.0  # frame rate of written videos
    instruction_noise: int = 0  # noise image instructions to this diffusion step (0: none)
    # K > 1: the whole UNet every K steps, its outer level alone in between (deep features
    # reused; faster, approximate); None: every step in full
    cache_interval: int | None = None
    # (height, width) per aspect ("1:1", "16:9", "9:16") the model was trained at
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    # the step training noised the instructions to (for reference; written by training)
    training_instruction_noise: int | None = None
    source: str = field(default="the model's generation settings", compare=False, repr=False)

    def __post_init__(self):
        if self.guidance_interval is not None:
            self.guidance_interval = tuple(self.guidance_interval)
        self.sizes = {k: tuple(v) for k, v in (self.sizes or {}).items()}

    # ------------------------------------------------------------ files
    @classmethod
    def from_dict(cls, values: dict, where: str = "generation settings") -> GenerationConfig:
        """Settings from a dict (a ``generation.json``): unknown keys and values of the wrong
        shape are refused, naming ``where``; earlier key names (:data:`EARLIER_KEYS`) are read
        as the current ones. Ranges are :func:`~pixeldance.generation.resolve`'s to check."""
        if not isinstance(values, dict):
            raise SettingError("file", f"{where}: expected a JSON object, got {values!r}")
        values = {EARLIER_KEYS.get(k, k): v for k, v in values.items()}
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingError(
                unknown[0],
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            )
        try:
            config = cls(**values, source=where)
        except (TypeError, ValueError) as err:
            raise SettingError("file", f"{where}: {err}") from err
        for aspect, size in config.sizes.items():
            if aspect not in ASPECTS:
                raise SettingError(
                    "sizes",
                    f"{where}: sizes has an unknown aspect {aspect!r}; use {', '.join(ASPECTS)}",
                )
            if len(size) != 2 or not all(_is_int(x) for x in size):
                raise SettingError(
                    "sizes", f"{where}: sizes[{aspect!r}] must be [height, width], got {list(size)}"
                )
        return config

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        del out["source"]
        out["guidance_interval"] = (
            list(self.guidance_interval) if self.guidance_interval is not None else None
        )
        out["sizes"] = {k: list(v) for k, v in self.sizes.items()}
        return out

    @classmethod
    def load(cls, folder: str | Path | object) -> GenerationConfig:
        """The settings in ``folder/generation.json`` (a folder path, or a loaded pipeline whose
        folder is known); the generic defaults if there is no such file."""
        path = _generation_file(folder)
        if path is None:
            return cls()
        try:
            values = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SettingError("file", f"{path} is not valid JSON: {err}") from err
        return cls.from_dict(values, str(path))

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/generation.json`` (complete, then renamed into place)."""
        from ..files import atomic_path

        path = Path(folder) / GENERATION_FILE
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_training(cls, config, **choices) -> GenerationConfig:
        """Settings for a model trained with ``config`` (a training ``Config``): its frame count,
        frame rate and one size per aspect from its buckets, its training instruction noise,
        then the measured ``choices`` (e.g. ``guidance_scale=15.0``) over the generic defaults."""
        sizes: dict[str, tuple[int, int]] = {}
        for b in config.data.buckets:
            h, w = b.height, b.width
            sizes.setdefault("1:1" if h == w else ("16:9" if w > h else "9:16"), (h, w))
        values = dict(
            num_frames=config.data.buckets[0].frames,
            fps=config.data.fps,
            training_instruction_noise=config.instructions.noise_timestep,
            sizes=sizes,
        )
        return cls.from_dict({**values, **choices}, "generation settings")

    # ------------------------------------------------------------ sizes
    def size_for(self, aspect: str, geometry: Geometry) -> tuple[int, int]:
        """(height, width) for an aspect: the model's own size for it if it lists one, else its
        default area at that aspect rounded to valid sizes."""
        if aspect not in ASPECTS:
            raise SettingError(
                "aspect", f"unknown aspect {aspect!r}; use one of {', '.join(ASPECTS)}"
            )
        if aspect in self.sizes:
            return self.sizes[aspect]
        h0, w0 = geometry.default_size
        a, b = (int(x) for x in aspect.split(":"))  # width : height
        m = geometry.multiple
        h = max(m, round(math.sqrt(h0 * w0 * b / a) / m) * m)
        w = max(m, round(math.sqrt(h0 * w0 * a / b) / m) * m)
        return h, w


@dataclass(frozen=True)
class Geometry:
    """The sizes a model makes: its default (height, width) in pixels and the multiple every
    height and width must be (autoencoder and UNet down-sampling together)."""

    default_size: tuple[int, int]
    multiple: int

    @classmethod
    def of(cls, unet_config: dict, vae_config: dict) -> Geometry:
        """From the UNet's and the autoencoder's configs (no weights needed)."""
        if "patch_size" in vae_config:  # the space-to-depth codec
            scale = int(vae_config["patch_size"])
        else:
            scale = 2 ** (len(vae_config["block_out_channels"]) - 1)
        multiple = scale * 2 ** (len(unet_config["block_out_channels"]) - 1)
        size = unet_config.get("sample_size")
        if size is None:
            default = (256, 256)  # the paper's base resolution
        else:
            h, w = (size, size) if isinstance(size, int) else size
            default = (h * scale, w * scale)
        return cls(default, multiple)

    @classmethod
    def of_folder(cls, folder: str | Path) -> Geometry:
        """From a pipeline folder's ``unet/config.json`` and ``vae/config.json``."""
        folder = Path(folder)
        configs = []
        for sub in ("unet", "vae"):
            path = folder / sub / "config.json"
            try:
                configs.append(json.loads(path.read_text()))
            except FileNotFoundError as err:
                raise FileNotFoundError(
                    f"pipeline folder {folder} has no {sub}/config.json"
                ) from err
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{path} is not valid JSON: {err}") from err
        try:
            return cls.of(*configs)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{folder}: unet/ or vae/config.json lacks sizes ({err})") from err


def make_scheduler(name: str, config):
    """A diffusers scheduler by its command-line name, built from another's ``config``."""
    import diffusers

    if name not in SCHEDULERS:
        raise SettingError(
            "scheduler", f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULERS)}"
        )
    return getattr(diffusers, SCHEDULERS[name]).from_config(config)


# ---------------------------------------------------------------- helpers
def _generation_file(source) -> Path | None:
    name = source if isinstance(source, (str, Path)) else getattr(source, "name_or_path", None)
    if not name:
        return None
    path = Path(str(name)) / GENERATION_FILE
    return path if path.is_file() else None


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def interval_problem(interval) -> str | None:
    """What is wrong with a guidance interval, or None if nothing (None is no interval)."""
    if interval is None:
        return None
    if (
        len(interval) != 2
        or not all(_is_int(x) for x in interval)
        or not 0 <= interval[0] <= interval[1] <= NUM_TIMESTEPS
    ):
        return (
            f"must be two integer timesteps LOW HIGH with 0 <= LOW <= HIGH <= {NUM_TIMESTEPS}, "
            f"got {list(interval)}"
        )
    return None
