"""mmincnext.ops.gemm_library: the library of the training GEMMs is chosen
once per machine (kept on disk for every later process) or forced, the
measurement leaves the caller's autograd context alone, and both paths
train the same network."""
import importlib
import json

import pytest
import torch

from mmincnext.models import InceptionNeXt
from mmincnext.ops import gemm_library
from mmincnext.ops.gemm_library import ENV_VAR, GEMM_LIBRARIES


def test_choice_is_measured_once_and_can_be_forced(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    first = gemm_library()
    assert first in GEMM_LIBRARIES
    assert gemm_library() == first  # cached
    for lib in GEMM_LIBRARIES:
        monkeypatch.setenv(ENV_VAR, lib)
        assert gemm_library() == lib
    monkeypatch.setenv(ENV_VAR, 'cublas')
    with pytest.raises(ValueError, match="MMINCNEXT_GEMM='cublas': must be "
                       "one of"):
        gemm_library()


@pytest.fixture
def own_choices(monkeypatch, tmp_path):
    """A fresh file of kept choices in ``tmp_path``, nothing forced, and
    no choice of this process cached before or after."""
    module = importlib.import_module('mmincnext.ops.gemm_library')
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv(module.CACHE_ENV_VAR, str(tmp_path))
    module._chosen.cache_clear()
    yield module, tmp_path / 'gemm_library.json'
    module._chosen.cache_clear()


def test_choice_is_kept_for_every_process_on_the_machine(own_choices):
    """The first measurement is written down under the machine's key and
    read back by later processes (here: after the process cache is
    cleared) instead of timing again, so that they all take one path; a
    broken file is named in a warning, measured again and rewritten."""
    module, path = own_choices
    first = gemm_library()
    kept = json.loads(path.read_text())
    key, = kept
    assert kept[key] == first
    assert f'| {torch.get_num_threads()} threads | torch ' in key
    other = next(lib for lib in GEMM_LIBRARIES if lib != first)
    path.write_text(json.dumps({key: other}))
    module._chosen.cache_clear()
    assert gemm_library() == other  # read back, not measured
    path.write_text('{"truncated')
    module._chosen.cache_clear()
    with pytest.warns(UserWarning, match='gemm_library.json: unreadable'):
        again = gemm_library()
    assert json.loads(path.read_text()) == {key: again}


def test_choice_measured_for_the_process_where_it_cannot_be_kept(
        own_choices, monkeypatch, tmp_path):
    """A cache folder that cannot be made (here: a file stands in its
    place) is named in a warning, and the choice is measured for this
    process only."""
    module, _ = own_choices
    blocker = tmp_path / 'not_a_folder'
    blocker.write_text('')
    monkeypatch.setenv(module.CACHE_ENV_VAR, str(blocker))
    with pytest.warns(UserWarning, match='not_a_folder.*cannot keep the '
                      'GEMM library choice'):
        assert gemm_library() in GEMM_LIBRARIES
    assert blocker.read_text() == ''


def train_step(model, x):
    model.zero_grad(set_to_none=True)
    outs = model(x)
    sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum()
        for o in outs).backward()
    return [o.detach() for o in outs], {
        n: p.grad.clone() for n, p in model.named_parameters()}


def test_both_libraries_give_the_same_outputs_and_gradients(monkeypatch):
    """BLAS (F.linear on the NHWC view) and oneDNN (1x1 convs) paths of a
    training step, on non-trivial weights (layer scales around 1). The
    BatchNorms are frozen (``norm_eval``): a training-mode BatchNorm removes
    the biases before it, whose gradients would be rounding noise."""
    torch.manual_seed(0)
    model = InceptionNeXt('atto', out_indices=(0, 1, 2, 3),
                          drop_path_rate=0., norm_eval=True).train()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('gamma'):
                p.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 64)
    results = {}
    for lib in GEMM_LIBRARIES:
        monkeypatch.setenv(ENV_VAR, lib)
        torch.manual_seed(1)
        results[lib] = train_step(model, x)
    (out_a, grad_a), (out_b, grad_b) = results['mkl'], results['onednn']
    for a, b in zip(out_a, out_b):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    assert grad_a.keys() == grad_b.keys()
    for name in grad_a:
        a, b = grad_a[name], grad_b[name]
        assert (a - b).abs().max() <= 1e-4 * a.abs().max() + 1e-8, name


def test_first_measurement_inside_a_checkpointed_block(own_choices):
    """The choice is first measured where a block's MLP first needs it,
    which with ``with_cp`` is inside a checkpointed forward pass (atto's
    stage 0: 40 channels, no fused kernels): the measurement records no
    saved tensors there, so the recomputation matches and training with
    checkpoints equals training without."""
    _, path = own_choices
    x = torch.randn(2, 3, 64, 64)
    results = []
    for with_cp in (True, False):
        torch.manual_seed(0)
        model = InceptionNeXt('atto', with_cp=with_cp).train()
        results.append(train_step(model, x))
    assert gemm_library() in GEMM_LIBRARIES and path.exists()  # measured
    (out_cp, grad_cp), (out, grad) = results
    for a, b in zip(out_cp, out):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for name in grad:
        torch.testing.assert_close(grad_cp[name], grad[name], rtol=1e-5,
                                   atol=1e-6, msg=name)
