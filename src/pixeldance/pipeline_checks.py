"""The checks of a :class:`~pixeldance.pipeline.PixelDancePipeline` call's arguments, made before
any work; each error names the argument and the range it must lie in."""

from __future__ import annotations

from .generation.config import interval_problem

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def check_call(
    prompt,
    negative_prompt,
    tau,
    num_inference_steps,
    num_frames,
    has_last_frame: bool,
    guidance_interval,
    decode_chunk_size,
    output_type,
) -> tuple[list[str], list[str] | None, tuple[int, int] | None]:
    """``(prompts, negative prompts or None, guidance interval as a tuple or None)``, or
    ValueError naming what is wrong."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ValueError("prompt must be a string or a non-empty list of strings")
    negative = None
    if negative_prompt is not None:
        negative = (
            [negative_prompt] * len(prompts)
            if isinstance(negative_prompt, str)
            else list(negative_prompt)
        )
    if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(
            f"num_inference_steps must be a positive integer, got {num_inference_steps!r}"
        )
    # one frame is an image (the temporal layers are skipped, as in image batches); a last
    # frame needs a clip to end
    if not isinstance(num_frames, int) or num_frames < (2 if has_last_frame else 1):
        raise ValueError(
            f"num_frames must be an integer >= 1 (>= 2 with a last frame), got {num_frames!r}"
        )
    if not isinstance(tau, int) or tau < 0 or (has_last_frame and tau > num_inference_steps):
        raise ValueError(
            f"tau must be an integer in [0, num_inference_steps={num_inference_steps}], got {tau!r}"
        )
    if guidance_interval is not None:
        guidance_interval = tuple(guidance_interval)
        problem = interval_problem(guidance_interval)
        if problem:
            raise ValueError(f"guidance_interval {problem}")
    chunk = decode_chunk_size
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"decode_chunk_size must be a positive integer or None, got {chunk!r}")
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}")
    return prompts, negative, guidance_interval
