"""Storyboards for long videos: a YAML or JSON file of shots.

```yaml
first_frame: start.png        # optional; paths are relative to the storyboard file
shots:
  - prompt: a red circle moves to the right
  - prompt: the red circle moves down
    last_frame: end.png        # optional
    tau: 25                    # optional
    keyframes:                 # optional: images at any frame (negative: from the end)
      - {index: 8, image: mid.png, tau: 20}          # tau optional
      - {index: -1, image: drawing.png, kind: sketch} # kind: rgb (default) or sketch
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .keyframes import KINDS, Keyframe
from .pipeline import Shot


@dataclass
class Storyboard:
    shots: list[Shot]
    first_frame: str | None = None


def load_storyboard(path: str | Path) -> Storyboard:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"storyboard not found: {path}")
    if path.is_dir():
        raise ValueError(f"the storyboard is a folder, not a YAML or JSON file: {path}")
    if not path.is_file():  # a FIFO would wait for a writer forever
        raise ValueError(f"the storyboard is not a regular file (a pipe or a device?): {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"storyboard {path} is not UTF-8 text: {err}") from err
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise ValueError(
            f"storyboard {path} is not valid {'JSON' if is_json else 'YAML'}: {detail}"
        ) from err
    if isinstance(data, list):
        data = {"shots": data}
    if not isinstance(data, dict) or not isinstance(data.get("shots"), list) or not data["shots"]:
        raise ValueError(
            f"storyboard {path} needs a non-empty list 'shots' of {{prompt, last_frame, tau}}"
        )

    unknown = set(data) - {"shots", "first_frame"}
    if unknown:
        raise ValueError(
            f"storyboard {path} has unknown keys {sorted(unknown)}; use 'shots' and 'first_frame'"
        )

    def resolve(p, where: str):
        if p is None:
            return None
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"storyboard {path}: {where} must be an image path, got {p!r}")
        return str(p if Path(p).is_absolute() else path.parent / p)

    shots = []
    for i, item in enumerate(data["shots"]):
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
            raise ValueError(f"storyboard {path}: shot {i + 1} needs a 'prompt' string")
        unknown = set(item) - {"prompt", "last_frame", "tau", "num_frames", "keyframes"}
        if unknown:
            raise ValueError(f"storyboard {path}: shot {i + 1} has unknown keys {sorted(unknown)}")
        tau, frames = item.get("tau"), item.get("num_frames")
        if tau is not None and (not isinstance(tau, int) or isinstance(tau, bool)):
            raise ValueError(f"storyboard {path}: shot {i + 1} tau must be an integer, got {tau!r}")
        if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool)):
            raise ValueError(
                f"storyboard {path}: shot {i + 1} num_frames must be an integer, got {frames!r}"
            )
        last = resolve(item.get("last_frame"), f"shot {i + 1} last_frame")
        keys = _keyframes(item.get("keyframes"), f"storyboard {path}: shot {i + 1}", resolve)
        shots.append(Shot(item["prompt"], last, tau, frames, keys))
    return Storyboard(shots, resolve(data.get("first_frame"), "first_frame"))


def _keyframes(items, where: str, resolve) -> list[Keyframe] | None:
    """A shot's ``keyframes:`` list of ``{index, image, tau?, kind?}`` (paths resolved)."""
    if items is None:
        return None
    if not isinstance(items, list):
        raise ValueError(f"{where} keyframes must be a list of {{index, image, tau, kind}}")
    out = []
    for j, item in enumerate(items):
        at = f"{where} keyframe {j + 1}"
        if not isinstance(item, dict) or set(item) - {"index", "image", "tau", "kind"}:
            raise ValueError(f"{at} must be a mapping of index, image, tau (opt.), kind (opt.)")
        index, tau, kind = item.get("index"), item.get("tau"), item.get("kind", "rgb")
        for name, value in (("index", index), ("tau", tau)):
            if (value is not None or name == "index") and (
                not isinstance(value, int) or isinstance(value, bool)
            ):
                raise ValueError(f"{at} {name} must be an integer, got {value!r}")
        if kind not in KINDS:
            raise ValueError(f"{at} kind must be one of {KINDS}, got {kind!r}")
        out.append(
            Keyframe(index, image=resolve(item.get("image"), f"{at} image"), kind=kind, tau=tau)
        )
    return out
