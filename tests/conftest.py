import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"
