"""One evaluation's generation step: the model loaded with its settings, the samples planned,
first frames made or read, the clips (or long videos, or a tau sweep) generated, and what to
record about it. ``pixeldance eval`` fills a :class:`GenerationRequest` from its flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..devices import Placement
from .inputs import Item
from .protocol import Preset


@dataclass
class GenerationRequest:
    model: str | None  # pipeline folder (None: the shipped model)
    out: Path
    frames: int
    placement: Placement = Placement()  # where generation runs (float32), as for generate
    seed: int = 0
    samples: int | None = None  # None: the preset's, else one per row
    first_frame: str = "manifest"
    last_frame: str = "manifest"
    steps: int | None = None
    guidance: float | None = None
    tau: int | None = None
    height: int | None = None
    width: int | None = None
    t2i: str | None = None
    t2i_steps: int = 50
    t2i_guidance: float = 7.5
    tau_sweep: list[int] | None = None
    long: int | None = None


def generate_for_eval(
    r: GenerationRequest, preset: Preset | None, items: list[Item]
) -> tuple[list[Item], dict, list[str]]:
    """Generate the clips to score: (items with videos, what to record, warnings)."""
    from ..folders import pipeline_folder
    from ..generation import GenerationConfig, Geometry, resolve
    from ..loading import load_pipeline
    from .adherence import tau_sweep
    from .first_frames import first_frame_maker
    from .generate import generate_videos, plan_samples
    from .protocol import (
        FIRST_FRAME_LABELS,
        text_only_warning,
        training_first_frame_drop_prob,
    )

    folder = pipeline_folder(r.model)
    size = preset.size if preset else (None, None)
    config = GenerationConfig.load(folder)
    settings = resolve(  # the one check, before the model loads
        config,
        Geometry.of_folder(folder),
        num_inference_steps=r.steps,
        guidance_scale=r.guidance,
        tau=r.tau,
        num_frames=r.frames,
        height=r.height or size[0],
        width=r.width or size[1],
        placement=r.placement,
    )
    plan = plan_samples(
        items,
        r.samples or (preset.samples if preset else None),
        class_prompts=bool(preset and preset.class_prompts),
    )
    pipe = load_pipeline(folder, settings, config)
    pipe.set_progress_bar_config(disable=True)
    generation = dataclasses.asdict(settings)
    device = r.placement.device
    maker, made = first_frame_maker(
        r.first_frame, pipe, settings, r.t2i, r.t2i_steps, r.t2i_guidance, device
    )
    record = {"model": str(folder.resolve()), "settings": generation, "samples": len(plan)}
    record.update(made)
    extra = {}
    if r.long:
        from .generate import first_frame_instruction
        from .long import clips_needed, generate_long

        out = r.out
        firsts = [
            first_frame_instruction(it, r.first_frame, out, i, maker, r.seed + i)[0]
            for i, it in enumerate(plan)
        ]
        chunks = generate_long(pipe, settings, plan, out, r.long, r.frames, r.seed, firsts, record)
        done = chunks[0]
        extra["long_chunks"] = chunks
        extra["long"] = (
            f"{r.long} frames per video: {clips_needed(r.long, settings.num_frames)} clips of "
            f"{settings.num_frames} chained (clip k+1 starts from clip k's last frame, as a latent), "
            f"scored in {r.long // r.frames} chunks of {r.frames} consecutive frames"
        )
    else:
        done = generate_videos(
            pipe, settings, plan, r.out, r.seed, r.first_frame, record, True, maker,
            r.last_frame,
        )  # fmt: skip
    if r.tau_sweep:
        extra["tau_sweep"] = tau_sweep(
            pipe, settings, plan, r.out, r.tau_sweep, r.seed,
            r.first_frame, maker, r.last_frame, record,
        )  # fmt: skip
    drop = training_first_frame_drop_prob(folder)
    warning = text_only_warning(r.first_frame, drop) if not made else None
    return (
        done,
        {
            "model": str(folder),
            "generation_settings": generation,
            "seed": f"{r.seed} (sample i drawn with its own generator seeded seed + i)",
            "first_frame_instructions": f"{r.first_frame}: {FIRST_FRAME_LABELS[r.first_frame]}",
            **({"first_frame_seeds": "sample i's first frame drawn with seed + i"} if made else {}),
            **made,
            "training_first_frame_drop_prob": "unknown (no config.yaml beside the model folder)"
            if drop is None
            else drop,
            "sampler": type(pipe.scheduler).__name__,
            "samples": f"{len(plan)} clips from {len(items)} manifest rows (row i * rows // samples)",
            "last_frame_instructions": r.last_frame,
            **extra,
        },
        [warning] if warning else [],
    )
