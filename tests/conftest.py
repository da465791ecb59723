import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# "ci" (default): enough examples to fuzz every op; "long": on-demand soak
# (BITOPS_HYPOTHESIS=long pytest ...); "dev": quick local iteration.
_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=200, **_common)
settings.register_profile("long", max_examples=5000, **_common)
settings.register_profile("dev", max_examples=30, **_common)
settings.load_profile(os.environ.get("BITOPS_HYPOTHESIS", "ci"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
