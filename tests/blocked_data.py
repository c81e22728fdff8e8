"""``pixeldance`` with a data stream that stops delivering after ``PIXELDANCE_TEST_BLOCK_AFTER``
micro-steps and then blocks for good in a read, as a stalled shard server or network mount
would. Before it blocks it writes the file ``PIXELDANCE_TEST_BLOCKED`` (the test's cue).

Usage: ``python tests/blocked_data.py train ARGS...`` (the arguments of ``pixeldance``)."""

import os
import sys
from pathlib import Path

from pixeldance.cli import main
from pixeldance.train import run as run_module

AFTER = int(os.environ.get("PIXELDANCE_TEST_BLOCK_AFTER", "0"))
CUE = Path(os.environ["PIXELDANCE_TEST_BLOCKED"])


class Stalled:
    """The real stream for ``AFTER`` micro-steps, then a read that never returns."""

    def __init__(self, stream):
        self.stream, self.image_every, self.served = stream, stream.image_every, 0
        self.pipe = os.pipe()  # nobody ever writes to it

    def __iter__(self):
        return self

    def __next__(self):
        if self.served < AFTER:
            self.served += 1
            return next(self.stream)
        CUE.write_text("blocked\n")
        os.read(self.pipe[0], 1)  # a system call, as a socket read is
        raise AssertionError("unreachable: nothing writes to the pipe")


def make_stream(*args, **kwargs):
    stream, empty_text = real(*args, **kwargs)
    return Stalled(stream), empty_text


real = run_module.make_stream
run_module.make_stream = make_stream

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
