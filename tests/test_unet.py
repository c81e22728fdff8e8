"""PixelDanceUNet: shapes, inflation from a 2D UNet, temporal layers, checkpointing, save/load."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from pixeldance import PixelDanceUNet
from pixeldance.models.layers import TemporalAttention, TemporalConv

TINY = dict(
    in_channels=8,
    out_channels=4,
    block_out_channels=(16, 32),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1,
    cross_attention_dim=24,
    attention_head_dim=2,
    norm_num_groups=8,
)


def tiny_unet2d(linear: bool = False) -> UNet2DConditionModel:
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=2,
        cross_attention_dim=24,
        attention_head_dim=2,
        norm_num_groups=8,
        use_linear_projection=linear,
    )
    randomize(unet)
    return unet.eval()


def randomize(module: torch.nn.Module, scale: float = 0.2) -> None:
    """Give every parameter a non-trivial random value (also the zero-initialised ones)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def randomize_temporal(unet: PixelDanceUNet) -> None:
    for m in unet.temporal_modules():
        randomize(m)


def inputs(b=2, f=3, h=8, w=8, c=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, f, h, w, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    ctx = torch.randn(b, 5, 24, generator=g)
    return x, t, ctx


@pytest.mark.parametrize("f,h,w", [(1, 8, 8), (2, 8, 8), (16, 8, 8), (3, 16, 24)])
def test_output_shapes(f, h, w):
    unet = PixelDanceUNet(**TINY).eval()
    x, t, ctx = inputs(f=f, h=h, w=w)
    with torch.no_grad():
        out = unet(x, t, ctx).sample
    assert out.shape == (2, 4, f, h, w)


def test_four_dimensional_image_input_gives_image_output():
    unet = PixelDanceUNet(**TINY).eval()
    x, t, ctx = inputs(f=1)
    with torch.no_grad():
        img = unet(x[:, :, 0], t, ctx).sample
        vid = unet(x, t, ctx).sample
    assert img.shape == (2, 4, 8, 8)
    torch.testing.assert_close(img, vid[:, :, 0])


def test_bad_sizes_raise_clear_errors():
    unet = PixelDanceUNet(**TINY)
    x, t, ctx = inputs(h=9, w=8)
    with pytest.raises(ValueError, match="multiples of 2"):
        unet(x, t, ctx)
    x, t, ctx = inputs(c=4)
    with pytest.raises(ValueError, match="in_channels=8"):
        unet(x, t, ctx)


@pytest.mark.parametrize("linear", [False, True])
def test_inflated_unet_matches_2d_on_images(linear):
    unet2d = tiny_unet2d(linear)
    unet3d, info = PixelDanceUNet.from_unet2d(unet2d, output_loading_info=True)
    assert unet3d.config.in_channels == 8
    assert info.widened_keys == ["conv_in.weight"]
    assert info.new_keys and all(".temp_" in k for k in info.new_keys)
    x, t, ctx = inputs(f=1, c=4)
    c_image = torch.zeros_like(x)
    with torch.no_grad():
        ref = unet2d(x[:, :, 0], t, ctx).sample
        out = unet3d.eval()(torch.cat([x, c_image], 1), t, ctx).sample[:, :, 0]
    assert ref.abs().max() > 0.1
    assert (out - ref).abs().max() < 1e-5


def test_inflated_unet_at_init_is_2d_unet_frame_by_frame():
    unet2d = tiny_unet2d()
    unet3d = PixelDanceUNet.from_unet2d(unet2d).eval()
    x, t, ctx = inputs(b=1, f=8, c=4)
    with torch.no_grad():
        out = unet3d(torch.cat([x, torch.randn_like(x)], 1), t, ctx).sample
        for i in range(8):
            ref = unet2d(x[:, :, i], t, ctx).sample
            assert (out[:, :, i] - ref).abs().max() < 1e-5


def test_temporal_attention_is_bidirectional():
    unet = PixelDanceUNet(**TINY).eval()
    randomize_temporal(unet)
    x, t, ctx = inputs(f=4)
    x2 = x.clone()
    x2[:, :, -1] += torch.randn_like(x2[:, :, -1])
    with torch.no_grad():
        a = unet(x, t, ctx).sample
        b = unet(x2, t, ctx).sample
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-4


def test_temporal_attention_alone_reaches_first_frame_from_last():
    attn = TemporalAttention(16, num_heads=2, norm_num_groups=4)
    randomize(attn)
    x = torch.randn(6, 16, 2, 2)  # B=1, F=6
    x2 = x.clone()
    x2[-1] += torch.randn_like(x2[-1])
    assert (attn(x, 6)[0] - attn(x2, 6)[0]).abs().max() > 1e-4


def test_no_temporal_module_runs_for_single_frame():
    unet = PixelDanceUNet(**TINY).eval()
    calls = []
    for m in unet.temporal_modules():
        m.register_forward_hook(lambda *a: calls.append(1))
    x, t, ctx = inputs(f=1)
    with torch.no_grad():
        unet(x, t, ctx)
    assert calls == []
    with torch.no_grad():
        unet(inputs(f=2)[0], t, ctx)
    assert len(calls) == len(unet.temporal_modules())


def test_temporal_conv_matches_conv1d_reference():
    conv = TemporalConv(8, norm_num_groups=4)
    randomize(conv)
    b, f = 2, 5
    x = torch.randn(b * f, 8, 3, 4)
    y = conv(x, f)
    # reference: conv1d along frames at each pixel
    h = torch.nn.functional.silu(conv.norm(x)).view(b, f, 8, 3, 4).permute(0, 3, 4, 2, 1)
    ref = conv.conv(h.reshape(-1, 8, f)).view(b, 3, 4, 8, f).permute(0, 4, 3, 1, 2)
    torch.testing.assert_close(y, x + ref.reshape(b * f, 8, 3, 4), atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_same_gradients():
    unet = PixelDanceUNet(**TINY)
    randomize_temporal(unet)
    x, t, ctx = inputs(f=3)

    def grads():
        unet.zero_grad()
        unet(x, t, ctx).sample.square().mean().backward()
        return {n: p.grad.clone() for n, p in unet.named_parameters()}

    plain = grads()
    unet.enable_gradient_checkpointing()
    assert unet.down_blocks[0].gradient_checkpointing
    ckpt = grads()
    unet.disable_gradient_checkpointing()
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, atol=1e-6, rtol=1e-5, msg=name)


def test_save_and_load_round_trip(tmp_path):
    unet = PixelDanceUNet(**TINY).eval()
    randomize_temporal(unet)
    unet.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = PixelDanceUNet.from_pretrained(tmp_path).eval()
    assert list(loaded.config.block_out_channels) == list(unet.config.block_out_channels)
    x, t, ctx = inputs(f=3)
    with torch.no_grad():
        assert torch.equal(unet(x, t, ctx).sample, loaded(x, t, ctx).sample)


def test_input_skip_starts_as_no_op_and_can_copy_c_image(tmp_path):
    """The optional 1x1 input skip is zero at init (the network is unchanged), saves and loads
    with the model, and is a path by which x0 of frame 0 can be an exact copy of c_image."""
    torch.manual_seed(0)
    plain = PixelDanceUNet(**TINY).eval()
    skip = PixelDanceUNet(**TINY, input_skip=True).eval()
    missing, unexpected = skip.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["conv_skip.weight", "conv_skip.bias"] and not unexpected
    x, t, ctx = inputs()
    with torch.no_grad():
        base = plain(x, t, ctx).sample
        assert torch.equal(skip(x, t, ctx).sample, base)
        # the instruction-copy initialisation adds the c_image half (channels 4..7) to the output
        skip.init_input_skip_as_instruction_copy()
        assert torch.allclose(skip(x, t, ctx).sample - base, x[:, 4:], atol=1e-5)
    skip.save_pretrained(tmp_path / "unet")
    loaded = PixelDanceUNet.from_pretrained(tmp_path / "unet").eval()
    assert loaded.config.input_skip is True
    with torch.no_grad():
        assert torch.equal(loaded(x, t, ctx).sample, skip(x, t, ctx).sample)


def test_instruction_copy_needs_a_skip_and_matching_channels():
    with pytest.raises(ValueError, match="no input skip"):
        PixelDanceUNet(**TINY).init_input_skip_as_instruction_copy()
    odd = PixelDanceUNet(**{**TINY, "in_channels": 9}, input_skip=True)
    with pytest.raises(ValueError, match="2 x out_channels"):
        odd.init_input_skip_as_instruction_copy()


def test_temporal_attention_on_levels_without_spatial_attention(tmp_path):
    """``temporal_attention_all_levels`` adds a temporal attention after every ResBlock of the
    levels that have no spatial attention; without it their layout (and so the keys of a saved
    model) is unchanged. The added layers are used for videos and skipped for images."""
    cfg = {
        **TINY,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    }
    torch.manual_seed(0)
    plain = PixelDanceUNet(**cfg).eval()
    every = PixelDanceUNet(**cfg, temporal_attention_all_levels=True).eval()
    assert len(plain.down_blocks[0].temp_attentions) == 0 and not plain.down_blocks[0].attentions
    assert len(every.down_blocks[0].temp_attentions) == len(every.down_blocks[0].resnets)
    assert len(every.up_blocks[1].temp_attentions) == len(every.up_blocks[1].resnets)
    assert not every.down_blocks[0].attentions  # no spatial attention was added
    plain_keys, every_keys = set(plain.state_dict()), set(every.state_dict())
    assert plain_keys < every_keys
    added = every_keys - plain_keys
    assert added and all(".temp_attentions." in k for k in added)
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in added} == {
        "down_blocks.0",
        "up_blocks.1",
    }

    calls = []
    layer = every.down_blocks[0].temp_attentions[0]
    layer.register_forward_hook(lambda *a: calls.append(1))
    randomize(every)
    x, t, ctx = inputs(f=3)
    out = every(x, t, ctx).sample
    assert out.shape == (x.shape[0], 4, 3, *x.shape[-2:]) and len(calls) == 1
    every(x[:, :, 0], t, ctx)  # an image batch: temporal layers are skipped
    assert len(calls) == 1

    every.save_pretrained(tmp_path / "unet")
    loaded = PixelDanceUNet.from_pretrained(tmp_path / "unet").eval()
    assert loaded.config.temporal_attention_all_levels is True
    with torch.no_grad():
        assert torch.equal(loaded(x, t, ctx).sample, every(x, t, ctx).sample)


def test_frame_embedding_tells_frames_apart_and_can_be_added_to_a_trained_unet(tmp_path):
    """``frame_embedding`` adds each frame's index to the timestep embedding. At init it is
    zero; ``with_frame_embedding`` adds it to a trained UNet without changing its outputs; once
    trained, identical frames give different outputs even with the temporal layers still at
    their identity initialisation (so the frame index reaches the spatial layers)."""
    torch.manual_seed(0)
    plain = PixelDanceUNet(**TINY).eval()
    for name, p in plain.named_parameters():  # "trained" spatial weights, identity temporal ones
        if "temp_" not in name:
            randomize_param = torch.randn(p.shape, generator=torch.Generator().manual_seed(2))
            p.data.copy_(randomize_param * 0.2)
    x, t, ctx = inputs(f=4)
    x = x[:, :, :1].expand(-1, -1, 4, -1, -1).contiguous()  # four identical frames
    gained = plain.with_frame_embedding().eval()
    assert gained.config.frame_embedding is True and plain.config.frame_embedding is False
    assert gained.with_frame_embedding() is gained
    with torch.no_grad():
        base = plain(x, t, ctx).sample
        assert torch.equal(gained(x, t, ctx).sample, base)
        assert torch.allclose(base[:, :, 0], base[:, :, 3])  # no way to tell the frames apart
        randomize(gained.frame_embed)
        out = gained(x, t, ctx).sample
    assert not torch.allclose(out[:, :, 0], out[:, :, 3], atol=1e-3)
    gained.save_pretrained(tmp_path / "unet")
    loaded = PixelDanceUNet.from_pretrained(tmp_path / "unet").eval()
    with torch.no_grad():
        assert torch.equal(loaded(x, t, ctx).sample, out)
        loaded(x[:, :, 0], t, ctx)  # image batches still work (frame index 0)
