"""Starting a pixeldance command, waiting for a phase of its work, and signalling it: the
signal tests' one runner."""

import os
import subprocess
import sys
import time

from helpers import ROOT, cli_env


def stop(argv, cwd, ready, signals, block_after=None, timeout=180.0, group=False, log=None):
    """Run ``pixeldance ARGV`` (through ``blocked_data.py`` when ``block_after`` is given);
    when ``ready(stderr, pid)`` holds, send ``signals`` (0.3 s apart; to its whole process
    group if ``group``, as ``timeout`` and a terminal do). It runs in ``cwd`` and writes its
    stderr to ``log`` (default ``cwd/stderr.txt``). Returns (exit code, stderr, seconds from
    the first signal to the exit)."""
    env = cli_env()
    script = ["-m", "pixeldance.cli"]
    cue = cwd / "blocked"
    if block_after is not None:
        script = [str(ROOT / "tests" / "blocked_data.py")]
        env["PIXELDANCE_TEST_BLOCK_AFTER"] = str(block_after)
        env["PIXELDANCE_TEST_BLOCKED"] = str(cue)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    log = log or cwd / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, *script, *argv],
            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=group,
        )  # fmt: skip
        start = time.monotonic()
        try:
            while not ready(log.read_text(), proc.pid):
                assert proc.poll() is None, f"ended before the phase: {log.read_text()[-2000:]}"
                assert time.monotonic() - start < timeout, "the phase never came"
                time.sleep(0.05)
            sent = time.monotonic()
            for i, sig in enumerate(signals):
                if i:
                    time.sleep(0.3)
                if group:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
            code = proc.wait(timeout=60)
            took = time.monotonic() - sent
        finally:
            proc.kill()
            proc.wait()
    return code, log.read_text(), took
