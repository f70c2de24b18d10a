import os
import sys

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Keep the 2-core CI machine responsive and runs reproducible.
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: end-to-end runs of the tools (tests/e2e); `make '
        'test` runs them, `make test-fast` skips them')


def randomize_official_state_dict(state_dict, seed=0):
    """Non-trivial weights in the official layout.

    With the 1e-6 layer-scale init every block is almost the identity and a
    wrong channel split or band orientation would hide, so every tensor gets
    random values of a realistic scale: layer scales around 1, BN statistics
    away from (0, 1).
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state_dict.items():
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        rand = torch.randn(value.shape, generator=gen)
        if key.endswith('running_var'):
            out[key] = rand.abs() + 0.5
        elif key.endswith('running_mean'):
            out[key] = 0.1 * rand
        elif key.endswith('gamma'):
            out[key] = 0.5 + 0.5 * rand.abs()
        elif key.endswith('norm.weight') or '.downsample.0.' in key or \
                key.startswith('stem.1.'):
            out[key] = 1 + 0.1 * rand
        else:
            fan_in = value[0].numel() if value.dim() > 1 else 1
            out[key] = rand / max(fan_in, 1)**0.5
    return out


@pytest.fixture(scope='session')
def timm_reference():
    """Build timm's InceptionNeXt (the official code and names) with random,
    non-trivial weights; returns (model, official_state_dict)."""
    import timm  # a test requirement: failing to import is an error
    cache = {}

    def build(arch):
        if arch not in cache:
            torch.manual_seed(0)
            ref = timm.create_model(f'inception_next_{arch}', pretrained=False)
            sd = randomize_official_state_dict(ref.state_dict())
            ref.load_state_dict(sd)
            cache[arch] = (ref.eval(), sd)
        return cache[arch]

    return build
