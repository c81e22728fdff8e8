"""The web demo's page (Gradio): a video from a prompt and optional first and last frames, with
clickable examples, and a story tab that chains shots into one video. It only calls
:class:`~pixeldance.cli.demo.DemoRunner`."""

from __future__ import annotations

from ..generation import ASPECTS
from .demo import DISPLAY_SIZE, MAX_SHOTS, MAX_STEPS, DemoInputError, DemoRunner


def build_app(runner: DemoRunner, queue_size: int = 8):
    """The Gradio page around ``runner`` with a bounded queue (one generation at a time)."""
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError(
            'the demo needs Gradio: pip install "pixeldance[demo]" (or pip install gradio)'
        ) from err

    d = runner.defaults

    def generate(prompt, first_frame, last_frame, tau, steps, aspect, seed, *keyframes):
        try:
            return runner(prompt, first_frame, last_frame, tau, steps, aspect, seed, *keyframes)
        except DemoInputError as err:
            raise gr.Error(str(err)) from err

    def story(first_frame, steps, seed, *shot_inputs):
        prompts, lasts = shot_inputs[:MAX_SHOTS], shot_inputs[MAX_SHOTS:]
        try:
            return runner.story(first_frame, list(zip(prompts, lasts, strict=True)), steps, seed)
        except DemoInputError as err:
            raise gr.Error(str(err)) from err

    shown = f"shown up to {DISPLAY_SIZE} pixels wide, each model pixel a block (no blur)"
    with gr.Blocks(title="PixelDance") as app:
        gr.Markdown(
            "# PixelDance\nA text, a first frame and an optional last frame make a video. "
            f"Model: `{runner.model.name}`."
        )
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(
                        label="prompt", max_lines=2, value="a red circle moves to the right"
                    )
                    with gr.Row():
                        first = gr.Image(label="first frame (optional)", type="filepath")
                        last = gr.Image(label="last frame (optional)", type="filepath")
                    steps = gr.Slider(
                        1, MAX_STEPS, value=d.num_inference_steps, step=1, label="denoising steps"
                    )
                    tau = gr.Slider(
                        0,
                        MAX_STEPS,
                        value=d.tau,
                        step=1,
                        label="tau: steps guided by the last frame (capped at the steps)",
                    )
                    aspect = gr.Radio(list(ASPECTS), value="1:1", label="aspect")
                    seed = gr.Number(value=0, precision=0, label="seed")
                    button = gr.Button("Generate", variant="primary")
                video = gr.Video(label=f"video ({shown})")
            inputs = [prompt, first, last, tau, steps, aspect, seed]
            gr.Examples(
                runner.examples(),
                inputs,
                video,
                generate,
                label="examples (click one, then Generate; or run it at once)",
                cache_examples=False,
                run_on_click=True,
            )
            with gr.Accordion("keyframes (optional)", open=False):
                with gr.Row():
                    middle = gr.Image(label="middle keyframe", type="filepath")
                    middle_index = gr.Slider(1, 64, value=8, step=1, label="its frame")
                    sketch = gr.Image(label="sketch ending (models trained with sketches)",
                                      type="filepath")  # fmt: skip
            button.click(generate, [*inputs, middle, middle_index, sketch], video)
        with gr.Tab("Story"):
            gr.Markdown(
                "Shots in order, each with its own prompt and optional last frame; each starts "
                "from the last frame of the one before. Empty rows are skipped."
            )
            with gr.Row():
                with gr.Column():
                    story_first = gr.Image(label="first frame (optional)", type="filepath")
                    shot_prompts, shot_lasts = [], []
                    for k in range(MAX_SHOTS):
                        with gr.Row():
                            shot_prompts.append(
                                gr.Textbox(label=f"shot {k + 1}", max_lines=1, scale=3)
                            )
                            shot_lasts.append(
                                gr.Image(label="last frame", type="filepath", scale=1, height=96)
                            )
                    story_steps = gr.Slider(
                        1, MAX_STEPS, value=d.num_inference_steps, step=1, label="denoising steps"
                    )
                    story_seed = gr.Number(value=0, precision=0, label="seed")
                    story_button = gr.Button("Generate the story", variant="primary")
                story_video = gr.Video(label=f"story ({shown})")
            story_button.click(
                story,
                [story_first, story_steps, story_seed, *shot_prompts, *shot_lasts],
                story_video,
            )
    app.queue(max_size=queue_size, default_concurrency_limit=1)
    return app
