"""What the tests of mmincnext.ops share: whether this CPU runs the kernels,
random MLPs and their float64 reference, a call on a given number of
threads."""
import platform

import pytest
import torch
import torch.nn.functional as F


def cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            return next((set(line.split(':', 1)[1].split()) for line in f
                         if line.startswith('flags')), set())
    except OSError:
        return set()


# The kernels' builds need AVX-512 (F, DQ) and FMA, or AVX2 and FMA.
CPU_ISA = None
if platform.machine() in ('x86_64', 'AMD64'):
    if {'avx512f', 'avx512dq', 'fma'} <= cpu_flags():
        CPU_ISA = 'avx512'
    elif {'avx2', 'fma'} <= cpu_flags():
        CPU_ISA = 'avx2'
CPU_RUNS_KERNEL = CPU_ISA is not None
needs_kernel = pytest.mark.skipif(
    not CPU_RUNS_KERNEL,
    reason='the kernels need an x86-64 CPU with AVX-512 or AVX2')


def reference(x, shortcut, w1, b1, w2, b2):
    """shortcut + fc2(gelu(fc1(x))) in float64 (exact erf GELU)."""
    x, shortcut, w1, b1, w2, b2 = (t.double()
                                   for t in (x, shortcut, w1, b1, w2, b2))
    return shortcut + F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


def random_mlp(rows, channels, hidden, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, channels, generator=gen),
            torch.randn(rows, channels, generator=gen),
            torch.randn(hidden, channels, generator=gen) / channels**0.5,
            torch.randn(hidden, generator=gen),
            torch.randn(channels, hidden, generator=gen) / hidden**0.5,
            torch.randn(channels, generator=gen))


def rel_err(out, ref):
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


def on_threads(threads, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on ``threads`` intra-op threads."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)
