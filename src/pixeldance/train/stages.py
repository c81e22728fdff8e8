"""Progressive training: earlier stages at fewer frames or pixels, then the main stage.

Video models are cheaper to train small first (fewer frames, lower resolution) and at full size
late. A config lists the early stages in ``data.stages``; the main stage is ``data.buckets``
(the size the model generates at) and runs from the end of the last early stage to
``optim.max_steps``. One LR schedule spans the whole run; the data stream serves each stage's
buckets; checkpoints and resume work across a stage boundary (the stream of a stage is a
function of the seed and the step within it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.buckets import Bucket, check_mapping, parse_buckets

STAGE_KEYS = ("name", "steps", "buckets", "image_every")


@dataclass(frozen=True)
class Stage:
    """An early stage as a config gives it: ``steps`` optimizer steps on ``buckets``, with an
    image batch every ``image_every``-th step (None: ``data.image_every``; 0: none)."""

    name: str
    steps: int
    buckets: tuple[Bucket, ...]
    image_every: int | None = None

    def to_dict(self) -> dict:
        """The config entry (``image_every`` only when the stage sets its own)."""
        out = {"name": self.name, "steps": self.steps, "buckets": [vars(b) for b in self.buckets]}
        if self.image_every is not None:
            out["image_every"] = self.image_every
        return out


def parse_stage(item: Stage | dict, where: str, default_name: str) -> Stage:
    """A stage from a config entry ``{steps, buckets, image_every (optional), name
    (optional)}``; a bad entry is refused naming ``where`` and the key."""
    if isinstance(item, Stage):
        return item
    check_mapping(item, STAGE_KEYS, where)
    steps = item.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{where}.steps must be an integer >= 1, got {steps!r}")
    if not item.get("buckets"):
        raise ValueError(f"{where}.buckets must list at least one bucket")
    every = item.get("image_every")
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 0):
        raise ValueError(f"{where}.image_every must be an integer >= 0, got {every!r}")
    name = item.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name must be a non-empty string, got {name!r}")
    buckets = tuple(parse_buckets(item["buckets"], f"{where}.buckets"))
    return Stage(name, steps, buckets, every)


def parse_stages(items: list) -> list[Stage]:
    """``data.stages`` of a config, parsed."""
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"data.stages must be a list of stages, got {items!r}")
    return [parse_stage(s, f"data.stages[{i}]", f"stage{i + 1}") for i, s in enumerate(items)]


@dataclass(frozen=True)
class PlannedStage:
    """Optimizer steps ``[start, end)`` train on ``buckets`` with an image batch every
    ``image_every``-th step (0: none)."""

    name: str
    start: int
    end: int
    buckets: tuple[Bucket, ...]
    image_every: int

    def __contains__(self, step: int) -> bool:
        return self.start <= step < self.end


def plan(cfg) -> list[PlannedStage]:
    """The stages of a training config (a ``Config``), in order, the main stage last."""
    d, total = cfg.data, cfg.optim.max_steps
    stages, start = [], 0
    for s in d.stages:
        every = d.image_every if s.image_every is None else s.image_every
        stages.append(PlannedStage(s.name, start, start + s.steps, s.buckets, every))
        start += s.steps
    if stages and start >= total:
        raise ValueError(
            f"the early stages (data.stages) take {start} steps, all of optim.max_steps={total}; "
            "leave the main stage (data.buckets) at least one step"
        )
    stages.append(PlannedStage("main", start, total, tuple(d.buckets), d.image_every))
    names = [b.name for s in stages for b in s.buckets]
    if len(set(names)) != len(names):
        raise ValueError(
            f"bucket names must differ across stages (a latent cache keeps them apart): {names}"
        )
    return stages


def stage_at(stages: list[PlannedStage], step: int) -> PlannedStage:
    """The stage optimizer step ``step`` belongs to (the main stage from its start on)."""
    for stage in stages:
        if step in stage:
            return stage
    return stages[-1]


def bucket_sets(cfg) -> list[list[Bucket]]:
    """Each stage's buckets, the main stage's last: what ``preprocess`` encodes, one set each."""
    return [list(s.buckets) for s in plan(cfg)]
