"""Keyframes at any index: packing, the per-keyframe tau rule, the training recipe, and old
models unchanged (issue 33)."""

import pytest
import torch

from helpers import ROOT, random_image, tiny_pipeline
from pixeldance.data.sketch import edge_map, to_sketch
from pixeldance.diffusion import make_training_scheduler
from pixeldance.instructions import (
    InstructionConfig,
    build_c_image,
    sample_training_instructions,
)
from pixeldance.keyframes import (
    Keyframe,
    KeyframeError,
    Slot,
    check_keyframes,
    pack_c_image,
    unpack_c_image,
)


def _legacy_c_image(num_frames, first, last, first_mask=None, last_mask=None):
    """The paper's [first, PADs, last] as build_c_image wrote it before keyframes existed."""
    b, c, h, w = first.shape
    out = first.new_zeros(b, c, num_frames, h, w)
    out[:, :, 0] = first if first_mask is None else first * first_mask.float().view(-1, 1, 1, 1)
    out[:, :, -1] = last if last_mask is None else last * last_mask.float().view(-1, 1, 1, 1)
    return out


def test_two_slot_case_is_bit_identical_to_the_papers_packing():
    g = torch.Generator().manual_seed(0)
    first, last = torch.randn(3, 4, 5, 6, generator=g), torch.randn(3, 4, 5, 6, generator=g)
    keep = torch.tensor([True, False, True])
    for masks in [(None, None), (keep, ~keep)]:
        new = build_c_image(7, first, last, *masks)
        old = _legacy_c_image(7, first, last, *masks)
        assert new.shape == old.shape and torch.equal(new, old)
        packed = pack_c_image((3, 4, 7, 5, 6), [Slot(0, first, masks[0]), Slot(6, last, masks[1])])
        assert torch.equal(packed, old)


@pytest.mark.parametrize("indices", [[0], [3], [0, 9], [1, 2, 3, 7], list(range(10))])
def test_any_index_set_round_trips_with_the_mask_layout(indices):
    g = torch.Generator().manual_seed(len(indices))
    slots = [Slot(i, torch.randn(1, 4, 3, 3, generator=g), sketch=i % 2 == 1) for i in indices]
    slots[0].latent = torch.zeros(1, 4, 3, 3)  # a real picture whose latent is zero
    c_image = pack_c_image((1, 4, 10, 3, 3), slots, "mask")
    assert c_image.shape == (1, 6, 10, 3, 3)
    found = unpack_c_image(c_image, 4, "mask")
    assert sorted(found) == sorted(indices)
    for s in slots:
        z, sketch = found[s.index]
        assert torch.equal(z, s.latent[0]) and sketch == s.sketch


def test_zeros_layout_cannot_tell_a_zero_keyframe_from_none():
    c_image = pack_c_image((1, 4, 5, 3, 3), [Slot(2, torch.zeros(1, 4, 3, 3))], "zeros")
    assert unpack_c_image(c_image, 4, "zeros") == {}  # the ambiguity the mask layout removes
    assert torch.equal(c_image, pack_c_image((1, 4, 5, 3, 3), [], "zeros"))


def test_per_sample_indices_pack_into_each_samples_frame():
    z = torch.randn(2, 4, 3, 3)
    c_image = pack_c_image((2, 4, 6, 3, 3), [Slot(torch.tensor([1, 4]), z)], "mask")
    assert torch.equal(c_image[0, :4, 1], z[0]) and torch.equal(c_image[1, :4, 4], z[1])
    assert c_image[:, 4].sum() == 2 * 9  # one frame each marked present


@pytest.mark.parametrize(
    "keyframes, message",
    [
        ([Keyframe(8, image="a")], "out of range"),
        ([Keyframe(-9, image="a")], "out of range"),
        ([Keyframe(2, image="a"), Keyframe(-6, image="b")], "two keyframes at frame 2"),
        ([Keyframe(-1, image="a", kind="sketch")], "not trained with sketch"),
        ([Keyframe(3, image="a", tau=11)], "tau must be an integer in 0..10"),
        ([Keyframe(3)], "give an image or a latent"),
    ],
)
def test_bad_keyframes_are_refused_in_one_line(keyframes, message):
    with pytest.raises(KeyframeError, match=message) as err:
        check_keyframes(keyframes, 8, 10, "zeros", 5)
    assert "\n" not in str(err.value)


def test_taus_default_to_all_steps_for_frame_0_and_the_models_tau_elsewhere():
    out = check_keyframes([Keyframe(-1, image="b"), Keyframe(0, image="a")], 8, 10, "mask", 4)
    assert [(k.index, k.tau) for k in out] == [(0, 10), (7, 4)]


def test_each_keyframe_is_in_the_unet_input_for_exactly_its_first_tau_steps():
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.unet = pipe.unet.with_keyframe_channels()
    pipe.register_modules(unet=pipe.unet)
    seen = []
    forward = pipe.unet.forward

    def spy(sample, *args, **kwargs):
        seen.append(sample[:, 4:].clone())  # c_image: 4 latent channels + mask + kind
        return forward(sample, *args, **kwargs)

    pipe.unet.forward = spy
    taus = {0: 6, 2: 3, 4: 1, 5: 0}
    keyframes = [Keyframe(i, image=random_image(i), tau=t) for i, t in taus.items()]
    keyframes.append(Keyframe(-1, image=random_image(9), kind="sketch", tau=2))
    pipe("x", keyframes=keyframes, num_frames=7, num_inference_steps=6, height=16, width=16,
         guidance_scale=1.0, tau=0, output_type="latent")  # fmt: skip
    assert len(seen) == 6
    for step, c_image in enumerate(seen):
        marked = {i for i in range(7) if c_image[0, 4, i].mean() == 1}
        expected = {i for i, t in {**taus, 6: 2}.items() if step < t}
        assert marked == expected, step
        for i in range(7):
            assert bool(c_image[0, :4, i].abs().sum() > 0) == (i in expected)
        assert bool(c_image[0, 5, 6].mean() == 1) == (6 in expected)  # the sketch's kind mark


def test_training_recipe_with_every_keyframe_mode():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(64, 4, 6, 2, 2, generator=g)
    config = InstructionConfig(
        middle_keyframe_prob=0.5, context_prefix_prob=0.5, sketch_last_prob=0.5, noise_timestep=0
    )
    drawn = sample_training_instructions(
        latents, config, make_training_scheduler(), g, layout="mask", sketcher=lambda z: -z
    )
    c = drawn.c_image
    assert c.shape == (64, 6, 6, 2, 2)
    assert torch.equal(c[:, 4, :, 0, 0].bool(), drawn.keyframes)
    middle = drawn.keyframes[:, 1:-1].any(1)
    assert 0.3 < middle.float().mean() < 0.95
    assert 0.1 < drawn.sketch_last.float().mean() < 0.5
    for b in range(64):
        for i in range(6):
            if not drawn.keyframes[b, i]:
                assert c[b, :, i].abs().sum() == 0
            elif i == 5:
                z = latents[b, :, drawn.last_index[b]]
                want = -z if drawn.sketch_last[b] else z
                assert torch.equal(c[b, :4, i], want) and c[b, 5, i, 0, 0] == drawn.sketch_last[b]
            else:
                assert torch.equal(c[b, :4, i], latents[b, :, i]) and c[b, 5, i, 0, 0] == 0


def test_paper_recipe_draws_exactly_what_it_always_drew():
    """With the new probabilities at 0 the recipe consumes the generator as before: the same
    c_image for the same seed, the "mask" layout adding only its marks."""
    latents = torch.randn(8, 4, 5, 2, 2, generator=torch.Generator().manual_seed(1))
    sched, config = make_training_scheduler(), InstructionConfig()
    a = sample_training_instructions(latents, config, sched, torch.Generator().manual_seed(3))
    b = sample_training_instructions(
        latents, config, sched, torch.Generator().manual_seed(3), layout="mask"
    )
    assert torch.equal(a.c_image, b.c_image[:, :4])
    assert torch.equal(b.c_image[:, 4, :, 0, 0].bool(), b.keyframes)


def test_sketches_are_dark_lines_on_light_ground():
    img = -torch.ones(1, 3, 16, 16)
    img[..., 4:12, 4:12] = 1  # a white square on black
    edges = edge_map(img, "canny")
    assert edges[0, 0, 8, 8] == 0 and edges[0, 0, 0, 0] == 0 and edges.sum() > 8
    assert edges[0, 0, 8].sum() <= 4  # thin: at most two pixels per crossing
    sketch = to_sketch(img)
    assert sketch.shape == img.shape and set(sketch.unique().tolist()) <= {-1.0, 1.0}


def test_a_zeros_unet_gains_mark_channels_without_changing_its_outputs():
    pipe = tiny_pipeline()
    unet, masked = pipe.unet, pipe.unet.with_keyframe_channels()
    assert masked.config.c_image_layout == "mask" and masked.config.in_channels == 10
    x = torch.randn(1, 8, 3, 8, 8)
    text = torch.randn(1, 5, unet.config.cross_attention_dim)
    marks = torch.rand(1, 2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(
            unet(x, 10, text).sample, masked(torch.cat([x, marks], 1), 10, text).sample
        )


@pytest.mark.parametrize(
    "override, message",
    [
        ("instructions.middle_keyframe_prob=1.5", "middle_keyframe_prob must be in"),
        ("instructions.context_prefix_prob=-0.1", "context_prefix_prob must be in"),
        ("instructions.sketch_last_prob=2", "sketch_last_prob must be in"),
        ("instructions.max_context_frames=1", "max_context_frames must be at least 2"),
        ("instructions.max_middle_keyframes=0", "max_middle_keyframes must be at least 1"),
        ("instructions.sketch_method=hed", "sketch_method must be one of"),
    ],
)
def test_keyframe_recipe_keys_are_checked(override, message):
    from pixeldance.train.config import load_config

    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_sketches_in_training_need_the_mask_layout():
    from pixeldance.train.config import load_config
    from pixeldance.train.setup import build_components

    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["instructions.sketch_last_prob=0.5"])
    with pytest.raises(ValueError, match="needs model.unet.c_image_layout: mask"):
        build_components(cfg)
    cfg = load_config(
        ROOT / "configs" / "tiny.yaml",
        ["instructions.sketch_last_prob=0.5", "model.unet.c_image_layout=mask"],
    )
    unet = build_components(cfg).unet
    assert unet.config.c_image_layout == "mask" and unet.config.in_channels == 2 * 48 + 2


def test_stable_diffusion_inflation_handles_both_layouts():
    from pixeldance.models import PixelDanceUNet
    from test_unet import tiny_unet2d

    unet2d = tiny_unet2d()
    plain = PixelDanceUNet.from_unet2d(unet2d).eval()
    masked = PixelDanceUNet.from_unet2d(unet2d, c_image_layout="mask").eval()
    assert plain.config.in_channels == 8 and plain.config.c_image_layout == "zeros"
    assert masked.config.in_channels == 10 and masked.config.c_image_layout == "mask"
    assert torch.count_nonzero(masked.conv_in.weight[:, 4:]) == 0
    x, marks = torch.randn(1, 8, 2, 8, 8), torch.rand(1, 2, 2, 8, 8)
    text = torch.randn(1, 3, 24)
    with torch.no_grad():
        a = plain(x, 5, text).sample
        b = masked(torch.cat([x, marks], 1), 5, text).sample
    assert torch.equal(a, b)
