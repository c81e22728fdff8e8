"""Encoders: the offline default text encoder, prompt states, chunked VAE, image reading."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_vae
from pixeldance.encoders import (
    PromptEncoder,
    decode_latents,
    encode_frames,
    load_text_encoder,
    text_embed_dim,
)
from pixeldance.files import read_image
from pixeldance.images import prepare_images


def test_default_text_encoder_offline():
    model, tokenizer = load_text_encoder()
    assert text_embed_dim(model) == 384
    pe = PromptEncoder(model, tokenizer, max_length=16)
    states = pe.encode(["a red circle moves left", "a blue square"])
    assert states.shape == (2, 16, 384)
    assert not torch.allclose(states[0], states[1])
    empty = pe.empty(3)
    assert empty.shape == (3, 16, 384) and pe.empty(1).data_ptr() == empty.data_ptr()  # cached once


def test_prompt_states_from_an_earlier_layer():
    """``hidden_layer`` picks the states of one encoder layer; the last one is the default.
    In MiniLM's early layers "left" and "right" stay further apart than in its last."""
    model, tokenizer = load_text_encoder()
    pe = PromptEncoder(model, tokenizer, max_length=16)
    pair = ["a red circle glides to the left", "a red circle glides to the right"]
    last = pe.encode(pair)
    empty_last = pe.empty(1)
    pe.hidden_layer = model.config.num_hidden_layers
    assert torch.equal(pe.encode(pair), last)
    pe.hidden_layer = 2
    early = pe.encode(pair)
    assert early.shape == last.shape and not torch.allclose(early, last)
    assert not torch.allclose(pe.empty(1), empty_last)  # the empty prompt is cached per layer

    def apart(states):  # largest per-token distance, relative to the mean token norm
        return ((states[0] - states[1]).norm(dim=-1).max() / states[0].norm(dim=-1).mean()).item()

    assert apart(early) > 1.2 * apart(last)


def test_vae_chunks_do_not_change_results():
    vae = tiny_vae()
    frames = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    a = encode_frames(vae, frames, chunk_size=3)
    b = encode_frames(vae, frames, chunk_size=100)
    assert a.shape == (2, 4, 5, 8, 8)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        decode_latents(vae, a, chunk_size=2),
        decode_latents(vae, a, chunk_size=64),
        atol=1e-5,
        rtol=1e-4,
    )
    whole = decode_latents(vae, a, chunk_size=None)  # None: every frame at once
    torch.testing.assert_close(decode_latents(vae, a, chunk_size=1), whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(encode_frames(vae, frames, chunk_size=None), b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="chunk size must be a positive integer or None"):
        decode_latents(vae, a, chunk_size=0)


def test_bfloat16_vae_and_text_encoder_keep_their_dtype_and_stay_close():
    """A learned autoencoder and the text encoder in bfloat16 stay close to float32: latents
    within 0.005 (measured 0.0013, latents up to 0.13), decoded frames within 0.05 in [-1, 1]
    (measured 0.028), MiniLM's text states within 2% in norm (measured 0.9%)."""
    vae, frames = tiny_vae(), torch.rand(1, 3, 2, 16, 16) * 2 - 1
    z = encode_frames(vae, frames)
    half = tiny_vae().to(torch.bfloat16)
    z_half = encode_frames(half, frames)
    assert z_half.dtype == torch.bfloat16
    torch.testing.assert_close(z_half.float(), z, atol=0.005, rtol=0)
    decoded = decode_latents(half, z)
    assert decoded.dtype == torch.float32
    assert (decoded - decode_latents(vae, z)).abs().max() < 0.05
    model, tokenizer = load_text_encoder()
    full = PromptEncoder(model, tokenizer, max_length=16).encode(["a red circle moves left"])
    model.to(torch.bfloat16)
    half_states = PromptEncoder(model, tokenizer, max_length=16).encode(["a red circle moves left"])
    assert half_states.dtype == torch.bfloat16
    assert (half_states.float() - full).norm() / full.norm() < 0.02


def test_exif_orientation_and_alpha(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    shown = np.asarray(read_image(tmp_path / "r.jpg"))
    assert shown.shape == (40, 20, 3)
    assert shown[2, 10, 2] > 200  # blue ends up on top
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.save(tmp_path / "a.png")
    assert np.asarray(read_image(tmp_path / "a.png")).min() == 255  # transparent -> white


def test_prepare_images_cover_crop_policy():
    wide = np.zeros((10, 40, 3), np.uint8)
    wide[:, 18:22] = 255  # a white band in the centre survives the centre crop
    out = prepare_images(wide, 16, 16, 1)
    assert out.shape == (1, 3, 16, 16)
    assert out[0, :, :, 8].min() > 0.9 and out[0, :, :, 0].max() < -0.9
    with pytest.raises(ValueError, match="2 images for a batch of 3"):
        prepare_images([wide, wide], 16, 16, 3)
