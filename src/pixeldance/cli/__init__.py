"""The ``pixeldance`` command line: parses arguments, then calls the library.

Every command checks its input before it works. A problem the user can fix ends the command
with one line naming the flag or file and what to change, exit code 2, and nothing written; a
failure during the work (a file that turns out unreadable, training that finds nothing to learn
from) ends it with one line and exit code 1. ``-v`` adds the traceback. Nothing heavy (torch,
diffusers) is imported before a command needs it, so ``--help`` and refusals answer at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import traceback

from . import common
from .common import UsageError, WorkFailed, add_placement_args, flag_error
from .data import add_data_parsers
from .eval import add_eval_parser
from .generate import add_generate_parsers
from .lora import add_lora_arg, checked_loras
from .train import add_train_parsers


class _Parser(argparse.ArgumentParser):
    """An argument error in one line (argparse would print the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pixeldance",
        description="PixelDance video diffusion: generate, train, measure.",
        epilog="exit codes: 0 done, 1 the work failed, 2 the input was refused (nothing "
        "written), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log more; show tracebacks of errors"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_parsers(sub)
    add_train_parsers(sub)
    add_data_parsers(sub)

    dm = sub.add_parser(
        "demo",
        help="serve a web page that generates videos (needs the demo extra: Gradio)",
        description="A Gradio page around the pipeline: one generation at a time, a bounded "
        "queue, bounded inputs. Needs pip install 'pixeldance[demo]'.",
    )
    dm.add_argument("--model", help="pipeline folder (default: the shipped model)")
    dm.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dm.add_argument("--port", type=int, default=7860)
    dm.add_argument("--queue", type=int, default=8, help="requests allowed to wait")
    dm.add_argument("--share", action="store_true", help="ask Gradio for a public link")
    add_placement_args(dm, offload=True)
    add_lora_arg(dm)
    dm.set_defaults(func=_cmd_demo)

    add_eval_parser(sub)

    i = sub.add_parser("info", help="print versions")
    i.set_defaults(func=_cmd_info)
    return parser


def _cmd_demo(args) -> int:
    if args.queue < 1:
        raise UsageError(f"--queue must be at least 1, got {args.queue}")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}")
    _check_listen_address(args.host, args.port)  # before the model loads or a folder is made
    from ..generation import SettingError
    from .demo import DemoRunner
    from .demo_page import build_app

    try:
        runner = DemoRunner(
            args.model,
            device=args.device,
            dtype=args.dtype,
            offload=args.offload,
            loras=checked_loras(args.lora),
        )
        app = build_app(runner, queue_size=args.queue)
    except SettingError as err:
        raise flag_error(err) from err
    except ImportError as err:
        raise UsageError(str(err)) from err
    common.work_started()
    app.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0


def _check_listen_address(host: str, port: int) -> None:
    """``--host`` an address of this machine and ``--port`` free on it, checked before the
    model loads: one line, nothing made."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        raise UsageError(f"--host {host!r} is not an address or a known host name") from err
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UsageError(f"--port {port} is in use on {host}; pick another") from err
            if err.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise UsageError(f"--host {host} is not an address of this machine") from err
            if err.errno == errno.EACCES:
                raise UsageError(
                    f"--port {port} needs privileges on {host}; use 1024 or more"
                ) from err
            raise UsageError(f"cannot listen on {host}:{port} ({err.strerror})") from err


def _cmd_info(args) -> int:
    import torch

    from .. import __version__

    print(f"pixeldance {__version__}, torch {torch.__version__}, cuda {torch.cuda.is_available()}")
    return 0


def _expected(err: BaseException) -> bool:
    """Errors that are about the input or the environment, not bugs: told in one line."""
    if isinstance(err, (UsageError, WorkFailed, OSError, ValueError)):
        return True
    # raised by libraries this module does not import up front
    return type(err).__name__ in (
        "SafetensorError",
        "TrainingStopped",
        "FFmpegError",
        "NonFiniteLatents",
    )


def _check_seed(seed: int | None) -> None:
    """Every command's ``--seed`` is a 64-bit unsigned integer (what torch's generators take)."""
    if seed is not None and not 0 <= seed < 2**64:
        raise UsageError(f"--seed must be from 0 to 2**64 - 1, got {seed}")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so every ``finally`` and temporary-folder cleanup
    runs as for Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (a test harness): leave signals alone
        previous = None
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "train" else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    common.reset()
    try:
        _check_seed(getattr(args, "seed", None))
        return args.func(args)
    except KeyboardInterrupt as err:
        stopped = "terminated" if isinstance(err, Terminated) else "interrupted"
        print(f"pixeldance {args.command}: {stopped}", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except Exception as err:
        if not _expected(err):
            raise
        if args.verbose:
            traceback.print_exc()
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"pixeldance {args.command}: error: {message}", file=sys.stderr)
        if isinstance(err, UsageError):
            return 2
        return 1 if common.working() else 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
