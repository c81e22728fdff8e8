import os
import sys
from pathlib import Path

# The suite is the CPU contract (the GPU checks are benchmarks/gpu_smoke.py): on a machine with
# a GPU, `auto` would pick it and the pinned CPU outputs would not hold. Set before torch starts
# CUDA; the commands the tests start inherit it.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Under pytest-xdist (the README's test command runs two workers on CI's two cores) each worker
# computes on one thread, so the two do not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
