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

from ..data.buckets import Bucket, parse_buckets

STAGE_KEYS = ("name", "steps", "buckets", "image_every")


@dataclass(frozen=True)
class Stage:
    """Optimizer steps ``[start, end)`` train on ``buckets`` with an image batch every
    ``image_every``-th step (0: none)."""

    name: str
    start: int
    end: int
    buckets: tuple[Bucket, ...]
    image_every: int

    def __contains__(self, step: int) -> bool:
        return self.start <= step < self.end


def plan(cfg) -> list[Stage]:
    """The stages of a training config (a ``Config``), in order, the main stage last."""
    d, total = cfg.data, cfg.optim.max_steps
    stages, start = [], 0
    for i, item in enumerate(d.stages):
        where = f"data.stages[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be a mapping of {', '.join(STAGE_KEYS)}")
        unknown = sorted(set(item) - set(STAGE_KEYS))
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}; known: {', '.join(STAGE_KEYS)}")
        steps = item.get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"{where}.steps must be an integer >= 1, got {steps!r}")
        if not item.get("buckets"):
            raise ValueError(f"{where}.buckets must list at least one bucket")
        every = item.get("image_every", d.image_every)
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"{where}.image_every must be an integer >= 0, got {every!r}")
        buckets = tuple(parse_buckets(item["buckets"]))
        stages.append(
            Stage(item.get("name", f"stage{i + 1}"), start, start + steps, buckets, every)
        )
        start += steps
    if stages and start >= total:
        raise ValueError(
            f"the early stages (data.stages) take {start} steps, all of optim.max_steps={total}; "
            "leave the main stage (data.buckets) at least one step"
        )
    stages.append(Stage("main", start, total, tuple(parse_buckets(d.buckets)), d.image_every))
    names = [b.name for s in stages for b in s.buckets]
    if len(set(names)) != len(names):
        raise ValueError(
            f"bucket names must differ across stages (a latent cache keeps them apart): {names}"
        )
    return stages


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage optimizer step ``step`` belongs to (the main stage from its start on)."""
    for stage in stages:
        if step in stage:
            return stage
    return stages[-1]


def bucket_sets(cfg) -> list[list[Bucket]]:
    """Each stage's buckets, the main stage's last: what ``preprocess`` encodes, one set each."""
    return [list(s.buckets) for s in plan(cfg)]
