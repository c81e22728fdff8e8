"""The web demo's page (Gradio): a video from a prompt and optional first and last frames, with
examples that fill in the inputs, and a story tab that chains shots into one video. It only
calls :class:`~pixeldance.cli.demo.DemoRunner`; the page's texts are made here, without Gradio."""

from __future__ import annotations

import re
from pathlib import Path

from ..generation import ASPECTS
from .demo import (
    MAX_IMAGE_PIXELS,
    MAX_SHOTS,
    MAX_STEPS,
    UPLOAD_ADVICE,
    DemoInputError,
    DemoRunner,
    check_image_file,
    display_scale,
    instruction_image,
)

UPLOAD_HINT = f"PNG, JPEG or WebP, at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels"


def about_model(runner: DemoRunner) -> str:
    """What the page's model knows, in Markdown: for the shipped model, the Dancing Shapes world
    it was trained on (and its model card); for any other, only its folder's name."""
    from ..data.shapes import BACKGROUNDS, COLOURS, SHAPES
    from ..folders import shipped_model_path

    if runner.model.resolve() != shipped_model_path().resolve():
        return (
            f"**Model:** `{runner.model.name}`, a pipeline folder given with `--model`; this "
            "page does not know what it was trained on."
        )
    h = min(min(runner.settings(aspect=a).height, runner.settings(aspect=a).width) for a in ASPECTS)
    return (
        "**What this model knows.** PixelDance-Shapes, the model shipped with pixeldance, was "
        "trained only on the *Dancing Shapes* world: coloured shapes "
        f"({', '.join(s + 's' for s in SHAPES)}; {', '.join(COLOURS)}) that move, bounce, grow, "
        f"shrink or rotate on textured backgrounds ({', '.join(BACKGROUNDS)}), sometimes with "
        f"the camera panning or zooming. It makes {runner.defaults.num_frames}-frame clips "
        f"{h} pixels on the short side. Prompts about anything else (people, animals, places) "
        "still give coloured shapes. Its model card, MODEL_CARD.md, says how it was made and "
        "measured" + (" (below)." if model_card() else " (in the pixeldance source repository).")
    )


def model_card() -> str | None:
    """MODEL_CARD.md of the source checkout this package runs from, its relative links turned
    into plain text (they lead nowhere from the page); None if there is none (an installed
    wheel)."""
    for folder in Path(__file__).resolve().parents:
        card = folder / "MODEL_CARD.md"
        if card.is_file() and (folder / "pyproject.toml").is_file():
            text = card.read_text(encoding="utf-8")
            return re.sub(r"\[([^\]]+)\]\((?!https?:)[^)]*\)", r"\1", text)
    return None


def display_note(runner: DemoRunner) -> str:
    """What is done to a clip before it is shown, per aspect: the model's size, the whole-pixel
    enlargement, the H.264 compression and the browser's own scaling."""
    blocks: dict[int, list[str]] = {}
    for aspect in ASPECTS:
        s = runner.settings(aspect=aspect)
        blocks.setdefault(display_scale(s.height, s.width), []).append(
            f"{s.width}x{s.height} ({aspect})"
        )
    sizes = "; ".join(f"{k}x{k} at {' and '.join(v)}" for k, v in blocks.items())
    return (
        "Shown enlarged by repeating pixels, with no smoothing: each pixel the model makes "
        f"becomes a block of screen pixels ({sizes}; sizes width x height). The video is then "
        "H.264-compressed, which softens edges and colours a little, and your browser scales it "
        "to fit this box."
    )


def tau_bounds(steps, tau) -> tuple[int, int]:
    """The tau slider's maximum and value for a steps value: tau counts steps, so it is capped
    at them."""
    steps = max(1, int(steps))
    return steps, max(0, min(int(tau), steps))


def describe_example(prompt, first_frame, last_frame, tau, steps, aspect, seed) -> str:
    """What clicking an example filled in, every input named (aspect and seed included)."""
    frames = {
        (False, False): "no first or last frame (text only)",
        (True, False): "a first frame, no last frame",
        (False, True): "a last frame, no first frame",
        (True, True): "a first and a last frame",
    }[(bool(first_frame), bool(last_frame))]
    ends = ": the clip ends on the last frame" if last_frame and tau == steps else ""
    return (
        f"**Example filled in:** prompt “{prompt}”, {frames}, {steps} steps, tau {tau}{ends}, "
        f"aspect {aspect}, seed {seed}. Press **Generate** to run it (change any input first "
        "if you like; they stay as set for your next video)."
    )


def build_app(runner: DemoRunner, queue_size: int = 8):
    """The Gradio page around ``runner`` with a bounded queue (one generation at a time)."""
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError(
            'the demo needs Gradio: pip install "pixeldance[demo]" (or pip install gradio)'
        ) from err

    def refusal(message: str) -> Exception:
        """The message shown on the page; an expected refusal, so no traceback in the console
        (``print_exception`` is in recent Gradio only)."""
        try:
            return gr.Error(message, print_exception=False)
        except TypeError:
            return gr.Error(message)

    def image_input(name: str, label: str, **kwargs):
        """An image upload box whose file is checked from its header (a readable format, the
        pixel limit) before Gradio's own preprocessing opens it, and decoded on upload: a
        corrupt file or a decompression bomb is answered with what to change, not Gradio's
        bare "Error". image_mode None: the file reaches the runner as uploaded (alpha is
        composited on white there, as on the command line), not converted by Gradio."""
        box = gr.Image(label=label, type="filepath", image_mode=None, **kwargs)
        gradio_preprocess = box.preprocess

        def preprocess(payload):
            # (wrapped on the instance: subclassing a Gradio component writes a .pyi stub file
            # next to the module that defines it)
            if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
                try:
                    check_image_file(payload.path, name, payload.orig_name)
                except DemoInputError as err:
                    raise refusal(str(err)) from err
            try:
                return gradio_preprocess(payload)
            except (OSError, ValueError, SyntaxError) as err:
                raise refusal(f"the {name} could not be read; {UPLOAD_ADVICE}") from err

        box.preprocess = preprocess

        def check_upload(path):  # decoded at once, so a damaged file is told on upload
            try:
                instruction_image(path, name)
            except DemoInputError as err:
                raise refusal(str(err)) from err

        box.upload(check_upload, box, None, show_progress="hidden")
        return box

    def generate(prompt, first_frame, last_frame, tau, steps, aspect, seed, *keyframes):
        try:
            return runner(prompt, first_frame, last_frame, tau, steps, aspect, seed, *keyframes)
        except DemoInputError as err:
            raise refusal(str(err)) from err

    def story(first_frame, steps, seed, *shot_inputs):
        prompts, lasts = shot_inputs[:MAX_SHOTS], shot_inputs[MAX_SHOTS:]
        try:
            return runner.story(first_frame, list(zip(prompts, lasts, strict=True)), steps, seed)
        except DemoInputError as err:
            raise refusal(str(err)) from err

    def cap_tau(steps, tau):
        maximum, value = tau_bounds(steps, tau)
        return gr.update(maximum=maximum, value=value)

    d = runner.defaults
    note = display_note(runner)
    card = model_card()
    # analytics off: a local demo sends nothing anywhere (and nothing is reachable offline)
    with gr.Blocks(title="PixelDance", analytics_enabled=False) as app:
        gr.Markdown(
            "# PixelDance\nA text, a first frame and an optional last frame make a video "
            f"(model: `{runner.model.name}`).\n\n{about_model(runner)}",
            elem_id="about",
        )
        if card:
            with gr.Accordion("Model card (MODEL_CARD.md)", open=False, elem_id="model-card"):
                gr.Markdown(card)
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(
                        label="prompt",
                        max_lines=2,
                        value="a red circle moves to the right",
                        elem_id="prompt",
                    )
                    with gr.Row():
                        first = image_input(
                            "first frame", "first frame (optional)", elem_id="first-frame"
                        )
                        last = image_input(
                            "last frame", "last frame (optional)", elem_id="last-frame"
                        )
                    gr.Markdown(f"Images: {UPLOAD_HINT}.")
                    steps = gr.Slider(
                        1, MAX_STEPS, value=d.num_inference_steps, step=1, label="denoising steps",
                        elem_id="steps",
                    )  # fmt: skip
                    tau = gr.Slider(
                        0,
                        d.num_inference_steps,
                        value=min(d.tau, d.num_inference_steps),
                        step=1,
                        label="tau: how many of the steps the last frame guides (at most the steps)",
                        elem_id="tau",
                    )
                    aspect = gr.Radio(list(ASPECTS), value="1:1", label="aspect", elem_id="aspect")
                    seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                    status = gr.Markdown(
                        "Or click an example below: it fills in every input above, aspect and "
                        "seed included, and runs nothing until you press Generate.",
                        elem_id="example-status",
                    )
                with gr.Column():
                    video = gr.Video(label="video", autoplay=True, loop=True, elem_id="video")
                    gr.Markdown(note)
            inputs = [prompt, first, last, tau, steps, aspect, seed]
            rows = runner.examples()
            examples = gr.Examples(
                rows,
                inputs,
                label="examples: a click fills in the inputs above; then press Generate",
                cache_examples=False,
                run_on_click=False,
                elem_id="examples",
            )

            def example_status(selected) -> str:
                # from the row itself (the dataset passes its index and values), not the
                # inputs, which the same click is still filling in
                index = selected[0] if isinstance(selected, (list, tuple)) else selected
                return describe_example(*rows[index])

            examples.dataset.click(
                example_status, examples.dataset, status, queue=False, show_progress="hidden"
            )
            steps.change(cap_tau, [steps, tau], tau, queue=False, show_progress="hidden")
            with gr.Accordion("keyframes (optional)", open=False):
                with gr.Row():
                    middle = image_input("middle keyframe", "middle keyframe", elem_id="middle")
                    middle_index = gr.Slider(1, 64, value=8, step=1, label="its frame")
                    sketch = image_input(
                        "sketch ending",
                        "sketch ending (models trained with sketches)",
                        elem_id="sketch",
                    )
            button.click(generate, [*inputs, middle, middle_index, sketch], video)
        with gr.Tab("Story"):
            gr.Markdown(
                "Shots in order, each with its own prompt and optional last frame; each starts "
                "from the last frame of the one before. Empty rows are skipped. Images: "
                f"{UPLOAD_HINT}."
            )
            with gr.Row():
                with gr.Column(scale=3):
                    story_first = image_input(
                        "first frame", "first frame (optional)", height=220, elem_id="story-first"
                    )
                    shot_prompts, shot_lasts = [], []
                    for k in range(MAX_SHOTS):
                        with gr.Row(equal_height=True):
                            shot_prompts.append(
                                gr.Textbox(
                                    label=f"shot {k + 1}: prompt",
                                    lines=3,
                                    max_lines=3,
                                    scale=3,
                                    elem_id=f"shot-{k + 1}",
                                )
                            )
                            shot_lasts.append(
                                image_input(
                                    f"shot {k + 1}'s last frame",
                                    f"shot {k + 1}: last frame (optional)",
                                    scale=2,
                                    min_width=200,
                                    height=230,
                                    elem_id=f"shot-{k + 1}-last",
                                )
                            )
                    story_steps = gr.Slider(
                        1, MAX_STEPS, value=d.num_inference_steps, step=1, label="denoising steps",
                        elem_id="story-steps",
                    )  # fmt: skip
                    story_seed = gr.Number(value=0, precision=0, label="seed", elem_id="story-seed")
                    story_button = gr.Button(
                        "Generate the story", variant="primary", elem_id="story-generate"
                    )
                with gr.Column(scale=2):
                    story_video = gr.Video(
                        label="story", autoplay=True, loop=True, elem_id="story-video"
                    )
                    gr.Markdown(note)
            story_button.click(
                story,
                [story_first, story_steps, story_seed, *shot_prompts, *shot_lasts],
                story_video,
            )
    app.queue(max_size=queue_size, default_concurrency_limit=1)
    return app
