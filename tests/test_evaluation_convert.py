"""``pixeldance eval convert-weights``: stand-ins in the public formats built here (a
pytorch-fid Inception state dict, an OpenAI-style TorchScript CLIP, an open_clip state dict),
converted by reading tensors only, then loaded and checked against the original networks; the
one-line errors that name the converter."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from evaluation_helpers import save_tiny_clip_tokenizer, save_torchscript_tree
from pixeldance.cli import main
from pixeldance.evaluation.inception import FIDInception
from pixeldance.evaluation.weights import load_clip, load_inception


def _videos(tmp_path):
    from pixeldance.files import write_mp4

    clip = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    for i in range(2):
        write_mp4(clip, tmp_path / "v" / f"{i}.mp4", fps=8)
        (tmp_path / "v" / f"{i}.txt").write_text("a red cat")
    return tmp_path / "v"


def _run(capsys, *args):
    rc = main(["eval", *map(str, args)])
    return rc, capsys.readouterr()


def test_pytorch_fid_inception_state_dict_converts_and_runs_as_pytorch_fid_does(tmp_path, capsys):
    torch.manual_seed(0)
    net = FIDInception().eval()
    pth = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), pth)  # the format pytorch-fid publishes (a state dict)
    rc, out = _run(capsys, "--videos", _videos(tmp_path), "--inception", pth, "--trust-weights",
                   "--metrics", "fid", "--references", tmp_path / "v", "--out", tmp_path / "r")  # fmt: skip
    assert rc == 2 and out.err.count("\n") == 1
    assert "convert-weights --from pytorch-fid-inception" in out.err
    st = tmp_path / "inception.safetensors"
    rc, out = _run(capsys, "convert-weights", "--from", "pytorch-fid-inception", "--input", pth,
                   "--out", st)  # fmt: skip
    assert rc == 0, out.err
    frames = np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    inception = load_inception(st)
    features = inception.features(frames)
    # a stand-in is not the published file (its SHA-256 does not start with 6726825d)
    assert inception.protocol()["checksum_verified"] is False
    # pytorch-fid's input path written here: centre square, bilinear 299, [0, 1] -> [-1, 1]
    x = torch.from_numpy(frames[:, :, 8:48]).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    with torch.no_grad():
        expected = net(x, return_features=True).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    rc, out = _run(capsys, "convert-weights", "--from", "pytorch-fid-inception", "--input", pth,
                   "--out", st)  # fmt: skip
    assert rc == 2 and "never replaces" in out.err  # an existing output is kept


def _openai_layout(model: CLIPModel) -> dict[str, torch.Tensor]:
    """The tiny transformers CLIP's tensors under OpenAI's names (the inverse map, written here)."""
    sd, out = model.state_dict(), {}
    for tower, src, dst in (("vision", "vision_model", "visual.transformer"),
                            ("text", "text_model", "transformer")):  # fmt: skip
        n = getattr(model.config, f"{tower}_config").num_hidden_layers
        for i in range(n):
            a, b = f"{src}.encoder.layers.{i}", f"{dst}.resblocks.{i}"
            qkv = [sd[f"{a}.self_attn.{p}_proj.weight"] for p in "qkv"]
            out[f"{b}.attn.in_proj_weight"] = torch.cat(qkv)
            out[f"{b}.attn.in_proj_bias"] = torch.cat(
                [sd[f"{a}.self_attn.{p}_proj.bias"] for p in "qkv"]
            )
            for new, old in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                             ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):  # fmt: skip
                for k in ("weight", "bias"):
                    out[f"{b}.{new}.{k}"] = sd[f"{a}.{old}.{k}"]
    e = "vision_model.embeddings"
    out |= {
        "visual.class_embedding": sd[f"{e}.class_embedding"],
        "visual.conv1.weight": sd[f"{e}.patch_embedding.weight"],
        "visual.positional_embedding": sd[f"{e}.position_embedding.weight"],
        "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
        "visual.proj": sd["visual_projection.weight"].T.contiguous(),
        "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        "ln_final.bias": sd["text_model.final_layer_norm.bias"],
        "text_projection": sd["text_projection.weight"].T.contiguous(),
        "logit_scale": sd["logit_scale"],
    }
    return out


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    tok = save_tiny_clip_tokenizer(root / "tokenizer")
    config = CLIPConfig(
        text_config=dict(
            vocab_size=514,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=1,
            max_position_embeddings=16,
            bos_token_id=512,
            eos_token_id=513,
        ),
        vision_config=dict(
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=1,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=8,
    )  # 64-wide heads, as CLIP's
    return config, tok


@pytest.mark.parametrize("kind", ["openai-clip", "open-clip"])
def test_clip_checkpoints_convert_to_a_folder_that_embeds_as_the_original(
    kind, tiny_clip, tmp_path, capsys
):
    config, tok = tiny_clip
    torch.manual_seed(3)
    original = CLIPModel(config).eval()
    tensors = _openai_layout(original)
    if kind == "openai-clip":  # a TorchScript archive, as ViT-B-32.pt
        src = save_torchscript_tree(tensors, tmp_path / "ViT-B-32.pt")
    else:  # a plain state dict under "state_dict", as open_clip saves its checkpoints
        src = tmp_path / "open_clip_pytorch_model.bin"
        torch.save({"state_dict": tensors, "epoch": 3}, src)
    rc, out = _run(capsys, "--videos", _videos(tmp_path), "--metrics", "clipsim", "--clip", src,
                   "--out", tmp_path / "r")  # fmt: skip
    assert (
        rc == 2
        and f"convert-weights --from {'openai-clip' if src.suffix == '.pt' else 'open-clip'}"
        in out.err
    )
    folder = tmp_path / "clip"
    rc, out = _run(capsys, "convert-weights", "--from", kind, "--input", src, "--tokenizer", tok,
                   "--activation", "quick_gelu", "--out", folder)  # fmt: skip
    assert rc == 0, out.err
    clip = load_clip(str(folder))
    frames = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    got = clip.image_embeddings(frames)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        want = original.get_image_features(pixel_values=x)
    want = want if isinstance(want, torch.Tensor) else want.pooler_output
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)
    text = clip.text_embeddings(["a red cat"])
    with torch.no_grad():
        ids = clip.tokenizer(["a red cat"], return_tensors="pt")
        ref = original.get_text_features(input_ids=ids["input_ids"])
    ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
    np.testing.assert_allclose(text, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_an_archive_with_other_objects_is_refused_without_running_it(tmp_path):
    import pickle
    import zipfile

    from pixeldance.evaluation.archive import torchscript_tensors

    bad = tmp_path / "evil.pt"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("evil/code/__torch__.py", "")
        z.writestr("evil/data.pkl", pickle.dumps(print))
    with pytest.raises(pickle.UnpicklingError, match="only tensors are read"):
        torchscript_tensors(bad)
