"""mmincnext.ops.gemm_library: the library of the training GEMMs, and the
training MLP's path per width, are chosen once per machine (kept on disk
for every later process) or forced, the measurement leaves the caller's
autograd context alone, and both paths train the same network."""
import importlib
import json
import re
import time

import pytest
import torch
from ops_helpers import needs_kernel

from mmincnext.models import InceptionNeXt
from mmincnext.ops import gemm_library
from mmincnext.ops.gemm_library import (ENV_VAR, GEMM_LIBRARIES,
                                        TRAINING_DOWNSAMPLE_ENV_VAR,
                                        TRAINING_DOWNSAMPLE_PATHS,
                                        TRAINING_MLP_ENV_VAR,
                                        TRAINING_MLP_PATHS,
                                        downsample_size_class,
                                        training_downsample_path,
                                        training_mlp_path)
from mmincnext.ops.kernels import kernels_build


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
    monkeypatch.delenv(TRAINING_MLP_ENV_VAR, raising=False)
    monkeypatch.delenv(TRAINING_DOWNSAMPLE_ENV_VAR, raising=False)
    caches = (module._chosen, module._mlp_chosen, module._downsample_chosen)
    for cache in caches:
        cache.cache_clear()
    yield module, tmp_path / 'gemm_library.json'
    for cache in caches:
        cache.cache_clear()


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


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: {family}
model\t\t: {model}
model name\t: AMD EPYC
flags\t\t: fpu avx512f

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 99
model\t\t: 99
model name\t: Other
"""


def test_machine_key_tells_cpus_of_the_same_name_apart(tmp_path):
    """Two CPUs a VM names alike (a Zen 4 and a Zen 5 as ``AMD EPYC``)
    keep their choices apart by family and model (the first processor's
    entry); without those fields the key is the name alone."""
    module = importlib.import_module('mmincnext.ops.gemm_library')
    keys = []
    for family, model in ((25, 17), (26, 2)):
        path = tmp_path / f'cpuinfo_{family}'
        path.write_text(CPUINFO.format(family=family, model=model))
        keys.append(module._machine_key(2, cpuinfo=str(path)))
    assert keys[0] == ('AMD EPYC (family 25, model 17) | 2 threads | '
                       f'torch {torch.__version__}')
    assert keys[1].startswith('AMD EPYC (family 26, model 2) | 2 threads')
    bare = tmp_path / 'cpuinfo_bare'
    bare.write_text('model name\t: ARMv8 Processor\n')
    assert module._machine_key(1, cpuinfo=str(bare)) == (
        f'ARMv8 Processor | 1 threads | torch {torch.__version__}')


def train_step(model, x):
    model.zero_grad(set_to_none=True)
    outs = model(x)
    sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum()
        for o in outs).backward()
    return [o.detach() for o in outs], {
        n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same_step(step_a, step_b):
    """Two :func:`train_step` results agree: outputs to 1e-5 and every
    gradient to 1e-4 of their largest values."""
    (out_a, grad_a), (out_b, grad_b) = step_a, step_b
    for a, b in zip(out_a, out_b):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    assert grad_a.keys() == grad_b.keys()
    for name in grad_a:
        a, b = grad_a[name], grad_b[name]
        assert (a - b).abs().max() <= 1e-4 * a.abs().max() + 1e-8, name


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
    assert_same_step(results['mkl'], results['onednn'])


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


@needs_kernel
def test_training_mlp_path_is_kept_per_width_and_allocator_setting(
        own_choices, monkeypatch):
    """The training MLP's path is measured once per width, allocator
    setting (glibc's defaults or freed memory kept: the faster path can
    differ between them) and build of the kernels, kept under keys naming
    them, read back instead
    of timed again, and can be forced; a bad forced value is named."""
    module, path = own_choices
    memory = importlib.import_module('mmincnext.engine.memory')
    monkeypatch.setattr(memory, '_applied', False)
    first = training_mlp_path(96, 384)
    assert first in TRAINING_MLP_PATHS
    monkeypatch.setattr(memory, '_applied', True)
    assert training_mlp_path(96, 384) in TRAINING_MLP_PATHS
    assert training_mlp_path(192, 768) in TRAINING_MLP_PATHS
    kept = json.loads(path.read_text())
    library = gemm_library()
    prefix = f'| {torch.get_num_threads()} threads | torch '
    mlp_keys = sorted(k for k in kept if 'training MLP' in k)
    assert len(mlp_keys) == 3 and all(prefix in k for k in mlp_keys)
    build = f' | kernels {kernels_build()}'
    assert re.fullmatch('[0-9a-f]{12}', kernels_build())
    assert [k.split(' | training MLP ')[1] for k in mlp_keys] == [
        f'192x768 | {library} | freed memory kept{build}',
        f'96x384 | {library} | freed memory kept{build}',
        f'96x384 | {library} | glibc defaults{build}']
    key = next(k for k in mlp_keys if k.endswith(
        f'96x384 | {library} | glibc defaults{build}'))
    assert kept[key] == first
    other = next(p for p in TRAINING_MLP_PATHS if p != first)
    kept[key] = other
    path.write_text(json.dumps(kept))
    module._mlp_chosen.cache_clear()
    monkeypatch.setattr(memory, '_applied', False)
    assert training_mlp_path(96, 384) == other  # read back, not measured
    for forced in TRAINING_MLP_PATHS:
        monkeypatch.setenv(TRAINING_MLP_ENV_VAR, forced)
        assert training_mlp_path(384, 1536) == forced
    monkeypatch.setenv(TRAINING_MLP_ENV_VAR, 'fused')
    with pytest.raises(ValueError, match="MMINCNEXT_TRAINING_MLP='fused': "
                       'must be one of'):
        training_mlp_path(96, 384)


@needs_kernel
def test_training_mlp_measurement_times_both_paths(monkeypatch):
    """The measurement runs the kernels and the given library on the
    width asked and picks the faster: with the kernels made slow it picks
    the library, with the library made slow the kernels."""
    module = importlib.import_module('mmincnext.ops.gemm_library')
    kernels = importlib.import_module('mmincnext.ops.kernels')
    real_backward, real_mm = kernels.mlp_backward, torch.Tensor.mm
    seen = []

    def slow_backward(grad, x, *args, **kwargs):
        seen.append(x.shape)
        time.sleep(0.05)
        return real_backward(grad, x, *args, **kwargs)

    monkeypatch.setattr(kernels, 'mlp_backward', slow_backward)
    for library in GEMM_LIBRARIES:
        assert module._measured_mlp(32, 128, library, rows=64,
                                    rounds=3) == 'library'
    assert set(seen) == {(64, 32)}
    monkeypatch.setattr(kernels, 'mlp_backward', real_backward)
    real_conv = torch.nn.functional.conv2d

    def slow(fn):
        def run(*args, **kwargs):
            time.sleep(0.02)
            return fn(*args, **kwargs)
        return run

    monkeypatch.setattr(torch.Tensor, 'mm', slow(real_mm))
    monkeypatch.setattr(torch.nn.functional, 'conv2d', slow(real_conv))
    for library in GEMM_LIBRARIES:
        assert module._measured_mlp(32, 128, library, rows=64,
                                    rounds=3) == 'kernels'


@needs_kernel
def test_training_mlp_level_times_go_to_the_kernels(monkeypatch):
    """The library is taken only where its median time is below
    LIBRARY_MLP_MARGIN of the kernels': 2 % faster is a tie, 4 % is not."""
    module = importlib.import_module('mmincnext.ops.gemm_library')
    assert module.LIBRARY_MLP_MARGIN == 0.97
    for library_time, path in ((0.98, 'kernels'), (0.96, 'library'),
                               (1.10, 'kernels')):
        monkeypatch.setattr(
            module, '_time', lambda fn, rounds, t=library_time:
            1.0 if fn.__name__ == 'on_kernels' else t)
        for library in GEMM_LIBRARIES:
            assert module._measured_mlp(32, 128, library, rows=64,
                                        rounds=3) == path


def test_downsample_size_classes_are_the_nearest_powers_of_two():
    """InceptionNeXt-T at batch 8, 224 px: 6272, 1568 and 392 output pixels
    at stages 1, 2 and 3."""
    assert [downsample_size_class(r) for r in (6272, 1568, 392)] == [
        8192, 2048, 512]
    # on a log scale: 512 and 1024 meet at 512 * sqrt(2) = 724
    assert [downsample_size_class(r) for r in (0, 1, 3, 5, 720, 730)] == [
        1, 1, 4, 4, 512, 1024]


def test_downsample_path_is_kept_per_width_and_size_class(
        own_choices, monkeypatch):
    """The downsample's path is measured once per width and size class
    (not per exact size), kept under keys naming them, read back instead of
    timed again, and can be forced; a bad forced value is named."""
    module, path = own_choices
    measured = []
    real = module._measured_downsample

    def measure(*args):
        measured.append(args)
        return real(*args, rounds=1)

    monkeypatch.setattr(module, '_measured_downsample', measure)
    first = training_downsample_path(16, 32, 300)
    assert first in TRAINING_DOWNSAMPLE_PATHS
    assert training_downsample_path(16, 32, 260) == first  # class 256
    training_downsample_path(16, 32, 400)  # class 512
    training_downsample_path(32, 64, 300)
    library = gemm_library()
    assert measured == [(16, 32, library, 256), (16, 32, library, 512),
                        (32, 64, library, 256)]
    kept = json.loads(path.read_text())
    keys = sorted(k.split(' | training downsample ')[1] for k in kept
                  if 'training downsample' in k)
    memory = ('freed memory kept' if importlib.import_module(
        'mmincnext.engine.memory').freed_memory_kept() else 'glibc defaults')
    assert keys == [f'16x32 | {c} output pixels | {library} | {memory}'
                    for c in (256, 512)] + [
                        f'32x64 | 256 output pixels | {library} | {memory}']
    key = next(k for k in kept if '16x32 | 256 output' in k)
    other = next(p for p in TRAINING_DOWNSAMPLE_PATHS if p != first)
    kept[key] = other
    path.write_text(json.dumps(kept))
    module._downsample_chosen.cache_clear()
    assert training_downsample_path(16, 32, 300) == other  # read back
    assert len(measured) == 3
    for forced in TRAINING_DOWNSAMPLE_PATHS:
        monkeypatch.setenv(TRAINING_DOWNSAMPLE_ENV_VAR, forced)
        assert training_downsample_path(384, 768, 392) == forced
    monkeypatch.setenv(TRAINING_DOWNSAMPLE_ENV_VAR, 'im2col')
    with pytest.raises(ValueError,
                       match="MMINCNEXT_TRAINING_DOWNSAMPLE='im2col': "
                       'must be one of'):
        training_downsample_path(96, 192, 6272)


def test_downsample_measurement_times_both_paths(monkeypatch):
    """The measurement runs the strided conv and the patch GEMM on the
    given library at the size asked and picks the faster: with the strided
    conv made slow the patches, with the patch GEMM made slow the conv."""
    module = importlib.import_module('mmincnext.ops.gemm_library')
    real_conv = torch.nn.functional.conv2d
    seen = []

    def conv(x, weight, *args, stride=1, **kwargs):
        seen.append((tuple(x.shape), stride))
        if stride == 2:
            time.sleep(0.02)
        return real_conv(x, weight, *args, stride=stride, **kwargs)

    monkeypatch.setattr(torch.nn.functional, 'conv2d', conv)
    for library in GEMM_LIBRARIES:
        assert module._measured_downsample(8, 16, library, 128,
                                           rounds=3) == 'patches'
    # 128 output pixels: one 8x16 map of outputs from a 16x32 input
    assert (1, 8, 16, 32) in {shape for shape, stride in seen if stride == 2}
    real_training = importlib.import_module('mmincnext.ops.training')
    real_patches = real_training.patches_2x2

    def slow_patches(x):
        time.sleep(0.02)
        return real_patches(x)

    monkeypatch.setattr(torch.nn.functional, 'conv2d', real_conv)
    monkeypatch.setattr(real_training, 'patches_2x2', slow_patches)
    for library in GEMM_LIBRARIES:
        assert module._measured_downsample(8, 16, library, 128,
                                           rounds=3) == 'conv'


def test_both_downsample_paths_give_the_same_outputs_and_gradients(
        monkeypatch):
    """A training step with every downsample (stages 1-3) as the patch GEMM
    equals the strided convs, on either library."""
    training = importlib.import_module('mmincnext.ops.training')
    calls = []
    real = training.downsample_training

    def counted(conv, x):
        calls.append(conv.in_channels)
        return real(conv, x)

    monkeypatch.setattr(importlib.import_module('mmincnext.ops'),
                        'downsample_training', counted)
    torch.manual_seed(0)
    model = InceptionNeXt('atto', out_indices=(0, 1, 2, 3),
                          drop_path_rate=0., norm_eval=True).train()
    x = torch.randn(2, 3, 64, 96)
    for lib in GEMM_LIBRARIES:
        monkeypatch.setenv(ENV_VAR, lib)
        results = []
        for path in ('conv', 'patches'):
            monkeypatch.setenv(TRAINING_DOWNSAMPLE_ENV_VAR, path)
            calls.clear()
            results.append(train_step(model, x))
            assert calls == ([40, 80, 160] if path == 'patches' else [])
        assert_same_step(*results)
