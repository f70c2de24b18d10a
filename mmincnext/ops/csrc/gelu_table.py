"""Prints the GELU tables of ``gelu.h`` (``kGeluScale``, ``kGeluMaxAbs``,
``kGeluQ``, ``kGeluR``).

``q(a) = Phi(-a) = erfc(a / sqrt(2)) / 2`` (for GELU) and ``r(a) = q(a) - a
phi(a)`` (GELU's derivative at ``-a``, ``phi`` the normal density: for the
backward pass) for ``a = |x|`` in ``[0, A_MAX]`` are cut into ``INTERVALS``
intervals of width ``1 / s`` centred on ``k / s`` (``k = round(a s)``, so
that the kernel takes ``k`` from the low bits of ``a s + 1.5 * 2**23``); on
each, a polynomial of degree ``DEGREE`` in ``u = a s - k`` (``|u| <= 1/2``)
fitted by least squares on Chebyshev nodes, rounded to float32. ``s`` puts
``A_MAX`` at ``k = 15.49``, so that the clamped ``a`` never rounds to
``k = 16``. Run: ``python gelu_table.py``.
"""
import math

import numpy as np

DEGREE, INTERVALS, A_MAX, NODES = 5, 16, 5.6, 256


def normal_tail(a):
    """q(a) = Phi(-a)."""
    return 0.5 * math.erfc(a / math.sqrt(2))


def gelu_grad_at_minus(a):
    """r(a) = gelu'(-a) = Phi(-a) - a phi(a)."""
    return normal_tail(a) - a * math.exp(-a * a / 2) / math.sqrt(2 * math.pi)


def scale():
    return float(np.float32((INTERVALS - 0.51) / A_MAX))


def table(f):
    """The float32 coefficients ``[DEGREE + 1, INTERVALS]`` of ``f`` (lowest
    degree first) on the intervals."""
    s = scale()
    u = np.cos(np.pi * (np.arange(NODES) + 0.5) / NODES) / 2
    vander = np.vander(u, DEGREE + 1, increasing=True)
    coef = np.empty((DEGREE + 1, INTERVALS))
    for k in range(INTERVALS):
        values = [f((k + v) / s) for v in u]
        coef[:, k] = np.linalg.lstsq(vander, values, rcond=None)[0]
    return coef.astype(np.float32)


def print_table(name, coef):
    print(f'alignas(64) inline constexpr float '
          f'{name}[{DEGREE + 1}][{INTERVALS}] = {{')
    for row in coef:
        print('    {' + ', '.join(f'{str(c)}f' for c in row) + '},')
    print('};')


if __name__ == '__main__':
    print(f'inline constexpr float kGeluScale = {scale()!r}f, '
          f'kGeluMaxAbs = {A_MAX}f;')
    print_table('kGeluQ', table(normal_tail))
    print_table('kGeluR', table(gelu_grad_at_minus))
