"""The ``pixeldance`` command line: parses arguments, then calls the library."""

from __future__ import annotations

import argparse
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from . import PixelDanceUNet, __version__

    unet = PixelDanceUNet()
    n = sum(p.numel() for p in unet.parameters())
    x = torch.zeros(1, unet.config.in_channels, 2, 8, 8)
    ctx = torch.zeros(1, 1, unet.config.cross_attention_dim)
    with torch.no_grad():
        out = unet(x, 0, ctx).sample
    print(f"pixeldance {__version__}, torch {torch.__version__}")
    print(
        f"default PixelDanceUNet: {n:,} parameters; (1, {x.shape[1]}, 2, 8, 8) -> {tuple(out.shape)}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixeldance",
        description="PixelDance video diffusion: generate, train and measure.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print versions and run the default UNet once")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
