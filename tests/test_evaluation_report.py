"""The report's "comparable with the paper" line per score, from the protocol a run had, and
the text-only warning for a model that never saw a clip without its first frame."""

from pixeldance.evaluation.comparable import comparability
from pixeldance.evaluation.protocol import (
    PRESETS,
    preset_warnings,
    text_only_warning,
    training_first_frame_drop_prob,
)
from pixeldance.evaluation.report import markdown, score_lines


def _report(samples=2990, first="t2i", frames=16, size="256x256", verified=True):
    fvd = {"checksum_verified": verified, "generated_samples": samples, "extractor": "I3D"}
    clip = {"checksum_verified": None, "extractor": "CLIP ViT-B/32", "clips": samples}
    return {
        "scores": {
            "fvd": {"value": 300.0, "protocol": fvd},
            "clipsim": {"value": 0.3, "protocol": clip},
            "flicker": {"value": 1.0, "protocol": {}},
        },
        "protocol": {
            "frames": frames,
            "resolution": [size],
            "first_frame_instructions": f"{first}: ...",
        },
        "warnings": [],
    }


def test_the_full_msrvtt_protocol_is_comparable_and_each_departure_says_why():
    msrvtt = PRESETS["msrvtt"]
    ok = comparability(_report(), msrvtt, None)
    assert ok["fvd"].startswith("yes, because") and "Stable Diffusion 2.1" in ok["fvd"]
    assert ok["clipsim"].startswith("yes") and "does not name its CLIP" in ok["clipsim"]
    assert ok["flicker"] == "no, because the paper reports no such score on msrvtt"
    bad = comparability(_report(100, "reference", 10, "48x48", False), msrvtt, None)["fvd"]
    assert bad.startswith("no, because the weights' checksum does not match")
    for why in ("100 samples, the benchmark has 2990", "first frames reference", "10 frames"):
        assert why in bad
    assert "generated at 48x48, not 256x256" in bad
    assert comparability(_report(), None, None)["fvd"].startswith("no, because no --preset")


def test_frame_is_is_never_comparable_and_is_printed_so():
    report = _report()
    report["scores"] = {"is": {"value": 3.0, "std": 0.1, "protocol": {}}}
    report["comparable"] = comparability(report, PRESETS["ucf101"], None)
    assert "the paper's UCF-101 IS is the C3D video IS" in report["comparable"]["is"]
    report["paper"] = PRESETS["ucf101"].paper
    printed = "\n".join(score_lines(report))
    assert "not comparable with the paper" in printed and "[paper" not in printed
    assert "Comparable with the paper: no, because" in markdown(report)


def test_preset_warnings_name_the_sample_count_and_the_first_frames():
    ucf = PRESETS["ucf101"]
    notes = preset_warnings(ucf, 300, "reference")
    assert "has 10000 samples; this run has 300" in notes[0]
    assert "ground truth first frame" in notes[1] and "--first-frame t2i" in notes[1]
    assert preset_warnings(ucf, 10_000, "t2i") == []


def test_text_only_on_a_model_trained_with_every_first_frame_warns(tmp_path):
    run = tmp_path / "run"
    (run / "pipeline").mkdir(parents=True)
    assert training_first_frame_drop_prob(run / "pipeline") is None  # unknown: no warning
    assert text_only_warning("none", None) is None
    (run / "config.yaml").write_text("instructions:\n  first_frame_drop_prob: 0.0\n")
    drop = training_first_frame_drop_prob(run / "pipeline")
    assert drop == 0.0 and "out of distribution" in text_only_warning("none", drop)
    assert text_only_warning("self", drop) is None and text_only_warning("none", 0.15) is None
