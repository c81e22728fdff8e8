"""The demo page in a real browser: Playwright for Python driving the system Chromium (Debian's
``chromium`` package; Playwright's own browser download is not used), against the demo served
in this process on 127.0.0.1 with the shipped model.

Skipped, with the reason, where Chromium or Playwright is missing, except under ``CI=true``
(``.ci/run`` installs both), where a missing browser fails the test instead. Screenshots of each
step are written to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from demo_images import write_bomb_png, write_corrupt_png, write_truncated_png
from pixeldance.folders import shipped_model_path
from pixeldance.generation import GenerationConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None
IN_CI = os.environ.get("CI") == "true"
MISSING = [
    need
    for need, have in [
        ("the chromium browser (apt-get install chromium)", CHROMIUM),
        ('Playwright for Python (pip install -e ".[test]")', sync_playwright),
    ]
    if not have
]

pytestmark = pytest.mark.skipif(
    not (shipped_model_path() / "model_index.json").exists(),
    reason="the shipped model is not in this checkout",
)
SHIPPED = GenerationConfig.load(shipped_model_path())  # 16 frames at 4 fps
TIMEOUT_MS = 120_000  # one generation of a few steps takes seconds; a busy CI machine, more


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo page, served from this process; its address."""
    if MISSING:
        reason = "the browser test needs " + " and ".join(MISSING)
        if IN_CI:
            pytest.fail(f"CI=true but {reason}: .ci/run installs both")
        pytest.skip(reason)
    from pixeldance.cli.demo import DemoRunner
    from pixeldance.cli.demo_page import build_app

    app = build_app(DemoRunner(out_dir=tmp_path_factory.mktemp("demo-videos")), queue_size=4)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    page.wait_for_selector("#generate")
    yield page
    page.screenshot(path=tmp_path / "last.png", full_page=True)
    page.close()


def set_slider(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def slider(page, elem_id: str) -> tuple[int, int]:
    """A slider's (value, maximum) as the page shows them."""
    value = page.locator(f"#{elem_id} input[type=number]").input_value()
    return int(value), int(page.locator(f"#{elem_id} input[type=range]").get_attribute("max"))


def wait_for_tau(page, value: int, maximum: int) -> None:
    page.wait_for_function(
        """([v, m]) => { const r = document.querySelector('#tau input[type=range]');
        return r && Number(r.max) === m && Number(r.value) === v; }""",
        arg=[value, maximum],
    )


# where the box's label and its drop zone's two lines of text are drawn (the text nodes' own
# boxes: their elements overflow the drop zone), and the box itself
TEXT_BOXES = """(id) => {
  const box = document.getElementById(id);
  const place = (r) => r && { top: r.top, bottom: r.bottom, width: r.width, height: r.height };
  const text = (words) => {
    const walk = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      if (n.textContent.includes(words)) {
        const range = document.createRange(); range.selectNodeContents(n);
        return place(range.getBoundingClientRect());
      }
    }
    return null;
  };
  return [place(box.querySelector('label').getBoundingClientRect()), text('Drop Image Here'),
          text('Click to Upload'), place(box.getBoundingClientRect())];
}"""


def wait_for_message(page, message: str) -> None:
    """Waits for an error toast holding ``message`` to be shown (faded in, not just present)."""
    page.wait_for_function(
        """(m) => [...document.querySelectorAll('.toast-body')].some(t =>
        t.innerText.includes(m) && Number(getComputedStyle(t).opacity) === 1)""",
        arg=message,
    )


def playing_video(page, elem_id: str) -> dict:
    """Waits for the ``<video>`` in ``elem_id`` to have its data and its clock to advance;
    returns what it reports."""
    selector = f"#{elem_id} video"
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('{selector}'); return v && v.readyState >= 2; }}"
    )
    start = page.evaluate(
        f"async () => {{ const v = document.querySelector('{selector}'); await v.play(); "
        "return v.currentTime; }"
    )
    page.wait_for_function(
        f"(t) => document.querySelector('{selector}').currentTime > t + 0.3", arg=start
    )
    return page.evaluate(
        f"""() => {{ const v = document.querySelector('{selector}'); return {{
        duration: v.duration, width: v.videoWidth, height: v.videoHeight,
        paused: v.paused, error: v.error && v.error.code }}; }}"""
    )


def test_page_says_what_the_model_knows_and_shows_its_card(page, tmp_path):
    about = page.locator("#about").inner_text()
    assert "Dancing Shapes" in about and "coloured shapes" in about and "MODEL_CARD.md" in about
    page.locator("#model-card").get_by_text("Model card (MODEL_CARD.md)").click()
    page.get_by_text("PixelDance-Shapes is a small PixelDance model").wait_for()
    page.screenshot(path=tmp_path / "about.png", full_page=True)


def test_an_example_fills_the_inputs_says_so_and_generates_a_playing_video(page, tmp_path):
    set_slider(page, "steps", 4)
    wait_for_tau(page, 4, 4)  # tau's slider follows the steps
    page.locator("#examples").get_by_text("a yellow triangle slides to the left").click()
    status = page.locator("#example-status")
    status.get_by_text("Example filled in").wait_for()
    assert "aspect 16:9, seed 2" in status.inner_text()
    assert page.locator("#prompt textarea").input_value() == "a yellow triangle slides to the left"
    assert page.locator("#aspect input:checked").get_attribute("value") == "16:9"
    assert page.locator("#seed input").input_value() == "2"
    wait_for_tau(page, 25, 50)  # the example's tau and steps, tau's maximum following
    assert page.locator("#video video").count() == 0  # a click fills in; it runs nothing
    page.screenshot(path=tmp_path / "example.png", full_page=True)

    set_slider(page, "steps", 3)  # few steps: seconds on a CPU
    wait_for_tau(page, 3, 3)
    page.locator("#generate").click()
    shown = playing_video(page, "video")
    assert shown["error"] is None
    assert shown["duration"] == pytest.approx(SHIPPED.num_frames / SHIPPED.fps, abs=0.3)
    assert (shown["width"], shown["height"]) == (320, 192)  # 80x48 in 4x4 blocks (16:9)
    page.screenshot(path=tmp_path / "video.png", full_page=True)


@pytest.mark.parametrize(
    "write, message",
    [
        (write_corrupt_png, "the first frame is not an image: bad.png; upload a PNG"),
        (write_truncated_png, "the first frame is a damaged image: bad.png"),
        (write_bomb_png, "the first frame declares more than 178 megapixels (bad.png)"),
    ],
    ids=["corrupt", "truncated", "bomb"],
)
def test_a_bad_image_is_answered_with_what_to_change(page, tmp_path, write, message):
    bad = write(tmp_path / "bad.png")
    page.locator("#first-frame input[type=file]").set_input_files(bad)
    wait_for_message(page, message)  # told on upload
    page.screenshot(path=tmp_path / "upload.png")
    page.evaluate("() => document.querySelectorAll('.toast-close').forEach(b => b.click())")
    page.wait_for_function("() => !document.querySelector('.toast-body')")
    set_slider(page, "steps", 2)
    page.locator("#generate").click()  # told again if Generate is pressed anyway
    wait_for_message(page, message)
    assert page.locator("#video video").count() == 0


def test_the_story_tab_chains_shots_into_one_playing_video(page, tmp_path):
    page.get_by_role("tab", name="Story").click()
    page.locator("#shot-1 textarea").fill("a red circle moves to the right")
    page.locator("#shot-2 textarea").fill("a red circle moves down")
    for k in range(1, 7):  # each shot's image box shows its drop zone whole, below its label
        label, drop, upload, box = page.evaluate(TEXT_BOXES, f"shot-{k}-last")
        assert drop and upload, f"shot {k}'s box has no drop zone text"
        assert label["bottom"] <= drop["top"], f"shot {k}'s label hides its text: {label}, {drop}"
        assert min(drop["height"], upload["height"], upload["width"]) > 0, f"shot {k}: cut off"
        assert upload["bottom"] <= box["bottom"], f"shot {k}'s text runs out of its box"
    page.screenshot(path=tmp_path / "story-tab.png", full_page=True)
    set_slider(page, "story-steps", 2)
    page.locator("#story-generate").click()
    shown = playing_video(page, "story-video")
    assert shown["error"] is None
    frames = 2 * SHIPPED.num_frames - 1  # two shots sharing one boundary frame
    assert shown["duration"] == pytest.approx(frames / SHIPPED.fps, abs=0.3)
    page.screenshot(path=tmp_path / "story.png", full_page=True)
