import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the corpus helper sits beside the tests

from render import kernels


@pytest.fixture(scope="session", autouse=True)
def _warm_kernels() -> None:
    kernels.warm_up()
