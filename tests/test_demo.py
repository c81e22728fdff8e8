"""The web demo's request handling (no Gradio needed) and, where Gradio is installed, its page."""

import os
from pathlib import Path
from types import SimpleNamespace

import av
import pytest
from PIL import Image, ImageFile

import pixeldance.cli.demo_page
from demo_images import write_bomb_png, write_corrupt_png, write_truncated_png
from helpers import ROOT
from pixeldance.cli.demo import (
    MAX_STEPS,
    DemoInputError,
    DemoRunner,
    check_image_file,
    display_scale,
)
from pixeldance.cli.demo_page import (
    about_model,
    build_app,
    describe_example,
    display_note,
    model_card,
    tau_bounds,
)
from pixeldance.folders import shipped_model_path

pytestmark = pytest.mark.skipif(
    not (shipped_model_path() / "model_index.json").exists(),
    reason="the shipped model is not in this checkout",
)


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return DemoRunner(out_dir=tmp_path_factory.mktemp("demo"))


def frames_of(path):
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_runner_writes_a_video_of_the_requested_aspect(runner):
    first = Image.new("RGB", (300, 200), (200, 40, 40))
    path = runner("a red circle moves to the right", first, None, 0, 3, "16:9", 1)
    frames = frames_of(path)
    assert len(frames) == runner.defaults.num_frames
    h, w, _ = frames[0].shape
    assert w > h
    # text only works too, and each request gets its own file
    second = runner("a blue square moves up", None, None, 0, 2, "9:16", 2)
    assert second != path
    h, w, _ = frames_of(second)[0].shape
    assert h > w


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(steps=0), "num_inference_steps must be an integer from 1 to 100"),
        (dict(steps=MAX_STEPS + 1), "num_inference_steps must be an integer from 1 to 100"),
        (dict(tau=-1), "tau must be between 0"),
        (dict(first_frame="README.md"), "the first frame is not an image: README.md"),
        (dict(last_frame="missing.png", tau=5), "the last frame is not an image: missing.png"),
        (dict(prompt="a red \udcff circle"), "not valid UTF-8"),
        (dict(aspect="4:3"), "unknown aspect"),
        (dict(prompt="x" * 1000), "keep it under"),
        (dict(prompt="", first_frame=None), "give a prompt"),
        (dict(first_frame="not an image"), "first frame is not an image"),
        (dict(last_frame=Image.new("RGB", (8, 8)), tau=0), "needs tau > 0"),
        (dict(first_frame=Image.new("RGB", (5000, 5000))), "megapixels"),
    ],
)
def test_bad_requests_say_what_to_change(runner, change, message, monkeypatch):
    monkeypatch.chdir(ROOT)
    request = dict(
        prompt="a red circle",
        first_frame=None,
        last_frame=None,
        tau=0,
        steps=2,
        aspect="1:1",
        seed=0,
    )
    request.update(change)
    before = sorted(runner.out_dir.iterdir())
    with pytest.raises(DemoInputError, match=message):
        runner(**request)
    assert sorted(runner.out_dir.iterdir()) == before  # nothing written


def test_page_builds_with_examples_a_story_tab_and_a_bounded_queue(runner):
    """Gradio is in the test extra, so this runs in CI."""
    import gradio as gr

    app = build_app(runner, queue_size=3)
    assert app.title == "PixelDance"
    assert app._queue.max_size == 3
    blocks = list(app.blocks.values())
    tabs = [b.label for b in blocks if isinstance(b, gr.Tab)]
    assert tabs == ["Video", "Story"]
    datasets = [b for b in blocks if isinstance(b, gr.Dataset)]  # what gr.Examples shows
    assert datasets and len(datasets[0].samples) == 3


def test_demo_command_without_gradio_says_how_to_install(monkeypatch, capsys):
    from pixeldance import cli

    monkeypatch.setitem(__import__("sys").modules, "gradio", None)  # import gradio fails
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "pixeldance[demo]" in err and "Traceback" not in err


def test_tau_above_the_steps_is_capped_not_refused(runner):
    """Lowering the steps slider below the tau slider (the quick way to go faster on a CPU) runs,
    with or without a last frame."""
    _, settings = runner.check("a red circle", None, None, 25, 4, "1:1", 0)
    assert settings.tau == 4 and settings.num_inference_steps == 4
    last = Image.new("RGB", (48, 48), (200, 40, 40))
    _, settings = runner.check("a red circle", None, last, 25, 4, "1:1", 0)
    assert settings.tau == 4


def test_uploads_arrive_as_paths(runner, tmp_path):
    path = tmp_path / "first.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(path)
    request, _ = runner.check("a red circle", str(path), None, 0, 2, "1:1", 0)
    assert isinstance(request["first_frame"], Image.Image) and request["first_frame"].size == (
        64,
        64,
    )


def test_every_example_runs_and_gives_a_playable_video(runner):
    """The page's clickable examples, through the same handler: a first and last frame pair, a
    text-only prompt, a 16:9 one. Videos are scaled up by whole pixels to the display size."""
    from pixeldance.cli.demo import DISPLAY_SIZE

    examples = runner.examples()
    assert len(examples) == 3 and examples[0][1] and examples[0][2]  # the pair has both frames
    assert examples[0][3] == examples[0][4]  # the pair: the last frame guides every step
    assert any(row[1] is None and row[2] is None for row in examples)  # a text-only one
    assert any(row[5] == "16:9" for row in examples)
    for prompt, first, last, tau, _steps, aspect, seed in examples:  # 4 steps: quick
        frames = frames_of(runner(prompt, first, last, tau, 4, aspect, seed))
        assert len(frames) == runner.defaults.num_frames
        h, w, _ = frames[0].shape
        assert DISPLAY_SIZE // 2 < max(h, w) <= DISPLAY_SIZE and (w > h) == (aspect == "16:9")
        block = frames[0][:8, :8].reshape(-1, 3).astype(int)  # one model pixel, 8x8 on screen
        assert (block.max(axis=0) - block.min(axis=0)).max() <= 12  # nearly flat: no blur


def test_story_chains_its_shots_into_one_video(runner):
    first = Image.new("RGB", (48, 48), (200, 40, 40))
    last = Image.new("RGB", (48, 48), (40, 40, 200))
    path = runner.story(first, [("a red circle moves right", None), ("", None),
                                ("a red circle moves down", last)], steps=3, seed=0)  # fmt: skip
    n = runner.defaults.num_frames
    assert len(frames_of(path)) == 2 * n - 1  # two shots (the empty row skipped), one boundary
    with pytest.raises(DemoInputError, match="at least one shot"):
        runner.story(None, [("", None), ("  ", None)])


@pytest.mark.parametrize(
    "write, message",
    [
        (write_corrupt_png, r"the first frame is not an image: bad\.png; upload a PNG"),
        (write_truncated_png, r"the first frame is a damaged image: bad\.png .*save it again"),
        (write_bomb_png, r"the first frame declares more than 178 megapixels \(bad\.png\); use"),
    ],
    ids=["corrupt", "truncated", "bomb"],
)
def test_images_pillow_cannot_read_are_refused_with_what_to_do(runner, tmp_path, write, message):
    """Gradio's own decoder answered these with a bare "Error"; the runner says what to change,
    and the bomb is refused from its header (never decoded)."""
    bad = write(tmp_path / "bad.png")
    before = sorted(runner.out_dir.iterdir())
    with pytest.raises(DemoInputError, match=message) as err:
        runner("a red circle", str(bad), None, 0, 2, "1:1", 0)
    assert "\n" not in str(err.value)
    assert sorted(runner.out_dir.iterdir()) == before


def test_image_size_is_read_from_the_header_before_decoding(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    Image.new("1", (5000, 4000)).save(big)  # 20 megapixels, over the limit, a small file
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    with pytest.raises(DemoInputError, match=r"the last frame \(big\.png\) is 5000x4000; keep"):
        check_image_file(big, "last frame")
    assert decoded == []  # refused without decoding a pixel
    ok = tmp_path / "ok.png"
    Image.new("RGB", (300, 200)).save(ok)
    assert check_image_file(ok, "first frame") == (300, 200)


def test_a_fifo_or_a_folder_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)  # opening it to read would block until a writer came
    with pytest.raises(DemoInputError, match="the first frame is not an image: frame.png"):
        check_image_file(fifo, "first frame")
    with pytest.raises(DemoInputError, match="the first frame is not an image: "):
        check_image_file(tmp_path, "first frame")


def test_the_upload_box_checks_a_file_before_gradio_opens_it(runner, tmp_path):
    """The page's image boxes run the header check in their preprocessing, so an upload that
    Gradio's own decoder would reject (a bomb, a corrupt file) gets the runner's message."""
    import gradio as gr
    from gradio.data_classes import ImageData

    app = build_app(runner)
    boxes = {b.elem_id: b for b in app.blocks.values() if isinstance(b, gr.Image)}
    assert {"first-frame", "last-frame", "story-first", "shot-1-last"} <= set(boxes)
    # no stub written into the package (Gradio writes a .pyi beside a component subclass)
    assert not Path(pixeldance.cli.demo_page.__file__).with_suffix(".pyi").exists()
    bomb = write_bomb_png(tmp_path / "upload.png")
    payload = ImageData(path=str(bomb), orig_name="holiday.png")
    with pytest.raises(gr.Error, match=r"the last frame declares .* \(holiday\.png\)"):
        boxes["last-frame"].preprocess(payload)
    corrupt = write_corrupt_png(tmp_path / "c.png")
    with pytest.raises(gr.Error, match=r"shot 2's last frame is not an image: c\.png"):
        boxes["shot-2-last"].preprocess(ImageData(path=str(corrupt), orig_name="c.png"))
    good = tmp_path / "good.png"
    Image.new("RGBA", (64, 48)).save(good)
    assert boxes["first-frame"].preprocess(ImageData(path=str(good))) == str(good)  # as is


def test_the_page_says_what_the_model_knows_and_what_is_done_to_a_video(runner, tmp_path):
    about = about_model(runner)
    assert "Dancing Shapes" in about and "coloured shapes" in about and "MODEL_CARD.md" in about
    card = model_card()
    assert card is not None and "PixelDance-Shapes" in card  # this checkout has the card
    assert "](docs/" not in card  # relative links (dead on the page) made plain text
    mine = SimpleNamespace(model=tmp_path / "my-model")
    assert "does not know what it was trained on" in about_model(mine)
    note = display_note(runner)
    assert "no blur" not in note and "H.264" in note and "browser scales" in note
    h, w = runner.defaults.sizes["16:9"]
    assert f"{display_scale(h, w)}x{display_scale(h, w)} at {w}x{h} (16:9)" in note


def test_tau_is_capped_at_the_steps_on_the_page():
    assert tau_bounds(50, 25) == (50, 25)
    assert tau_bounds(4, 25) == (4, 4)  # lowering the steps pulls tau down with its maximum
    assert tau_bounds(60, 4) == (60, 4)  # raising them leaves tau where it was
    assert tau_bounds(0, 3) == (1, 1)


def test_examples_fill_the_inputs_and_say_every_setting(runner):
    """Clicking an example runs nothing; the page says what it filled in, aspect and seed
    included (they stay set for the user's next video)."""
    import gradio as gr

    app = build_app(runner)
    examples = [b for b in app.blocks.values() if isinstance(b, gr.Dataset)][0]
    assert "then press Generate" in examples.label
    fns = {f.name: f for f in app.fns.values()}
    on_click = fns["example_status"]  # what the page runs when a row is clicked
    assert on_click.inputs == [examples]
    assert "aspect 16:9, seed 2" in on_click.fn((2, runner.examples()[2]))
    # generation runs from the Generate button only (a running example would add a second)
    assert [f.name for f in app.fns.values()].count("generate") == 1
    texts = [describe_example(*row) for row in runner.examples()]
    assert "a first and a last frame" in texts[0] and "the clip ends on the last frame" in texts[0]
    assert "text only" in texts[1]
    assert "aspect 16:9, seed 2" in texts[2] and "Press **Generate**" in texts[2]
