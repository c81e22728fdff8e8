"""Bad input is refused before any work, in one line, and leaves nothing behind; odd but valid
input (16-bit images, palettes) is read correctly."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, cli_env
from pixeldance.files import check_output_path, read_image


def test_16_bit_and_palette_images_keep_their_brightness(tmp_path):
    grey = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    rgb = np.asarray(read_image(tmp_path / "deep.png"), dtype=np.float64)
    expected = grey.mean() / 65535 * 255
    assert abs(rgb.mean() - expected) < 0.01 * expected
    colours = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(colours).quantize(16).save(tmp_path / "palette.png")
    palette = np.asarray(read_image(tmp_path / "palette.png"), dtype=np.float64)
    assert abs(palette.mean() - colours.mean()) < 0.05 * colours.mean()


def write_rgb16_png(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write one)."""
    h, w, _ = rgb.shape
    rows = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)


def test_16_bit_rgb_and_dark_16_bit_grey_keep_their_values(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint16)
    rgb[..., 0], rgb[..., 1] = 65535, 32896  # 255 and 128 in 8 bits
    write_rgb16_png(tmp_path / "rgb16.png", rgb)
    assert np.asarray(read_image(tmp_path / "rgb16.png"))[0, 0].tolist() == [255, 128, 0]
    # a dark 16-bit image (every value under 256) stays dark: scaled by its depth, not its max
    Image.fromarray(np.full((8, 8), 2570, np.uint16)).save(tmp_path / "dark.png")
    assert np.asarray(read_image(tmp_path / "dark.png"))[0, 0].tolist() == [10, 10, 10]
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "darker.png")
    assert np.asarray(read_image(tmp_path / "darker.png"))[0, 0].tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "make, name, message",
    [
        (lambda d: (d / "clip.mp4").mkdir(), "clip.mp4", "is a folder"),
        (lambda d: (d / "frames").mkdir() or (d / "frames" / "a.txt").write_text("x"),
         "frames", "holds files pixeldance did not write"),
        (lambda d: (d / "frames").mkdir() or (d / "frames" / "frame_00000.png").write_bytes(b""),
         "frames", "pass --overwrite"),
        (lambda d: (d / "clip.mp4").write_text("x"), "clip.mp4", "exists; pass --overwrite"),
        (lambda d: (d / "file").write_text("x"), "file/clip.mp4", "is a file, not a folder"),
        (lambda d: None, "clip.avi", "unknown output type"),
    ],
)  # fmt: skip
def test_output_path_problems_are_found_before_work(tmp_path, make, name, message):
    make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=message):
        check_output_path(tmp_path / name)
    assert sorted(tmp_path.rglob("*")) == before


def test_output_in_a_new_folder_is_fine_and_nothing_is_made_early(tmp_path):
    assert check_output_path(tmp_path / "a" / "b" / "clip.mp4") == tmp_path / "a" / "b" / "clip.mp4"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["generate", "--help"],
        ["generate", "--prompt", "x", "--steps", "many", "--out", "x.mp4"],
        ["generate", "--prompt", "x", "--first-frame", "missing.png", "--out", "x.mp4"],
    ],
)
def test_answers_without_loading_torch(args, tmp_path):
    code = (
        "import sys\n"
        "from pixeldance.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'diffusers' not in sys.modules, 'diffusers was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (tmp_path / "x.mp4").exists()


def test_preprocess_that_caches_nothing_fails_and_leaves_no_cache(tmp_path, monkeypatch, capsys):
    from pixeldance.cli import main

    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "videos.csv").write_text("path,caption\nbroken.mp4,a red circle\n")
    monkeypatch.chdir(tmp_path)
    code = main(
        ["preprocess", "--config", str(ROOT / "configs" / "tiny.yaml"), "--data", "videos.csv",
         "--out", "cache"]
    )  # fmt: skip
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert code == 1 and last.startswith("pixeldance preprocess: error: nothing could be encoded")
    assert "pixeldance check-data videos.csv" in last
    assert not (tmp_path / "cache").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cache")]


def test_verbose_shows_the_traceback(tmp_path, monkeypatch, capsys):
    from pixeldance.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["-v", "check-data", "nowhere.csv"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("pixeldance check-data")


def write_bomb_png(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A few hundred bytes of PNG that claim ``width`` x ``height`` grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)


@pytest.mark.parametrize("size", [(20000, 20000), (9000, 9000)])
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, size):
    write_bomb_png(tmp_path / "bomb.png", *size)
    assert (tmp_path / "bomb.png").stat().st_size < 2000
    with pytest.raises(ValueError, match="image too large: .*bomb.png"):
        read_image(tmp_path / "bomb.png")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ValueError, match="not a regular file"):
        read_image(tmp_path / "pipe.png")


@pytest.mark.parametrize("flag", ["--first-frame", "--last-frame"])
def test_generate_refuses_a_bomb_and_a_fifo_in_one_line(tmp_path, flag):
    import os

    write_bomb_png(tmp_path / "bomb.png")
    os.mkfifo(tmp_path / "pipe.png")
    for name, message in (("bomb.png", "image too large"), ("pipe.png", "not a regular file")):
        argv = ["generate", "--prompt", "a red circle", flag, str(tmp_path / name)]
        result = subprocess.run(
            [sys.executable, "-m", "pixeldance.cli", *argv, "--out", str(tmp_path / "o.mp4")],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
            env=cli_env(),
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and flag in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.png", "pipe.png"]
