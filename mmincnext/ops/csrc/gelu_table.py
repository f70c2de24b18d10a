"""Prints the GELU table of ``gelu.h`` (``kGeluScale``, ``kGeluMaxAbs``,
``kGeluQ``).

``q(a) = Phi(-a) = erfc(a / sqrt(2)) / 2`` for ``a = |x|`` in ``[0, A_MAX]``
is cut into ``INTERVALS`` intervals of width ``1 / s`` centred on ``k / s``
(``k = round(a s)``, so that the kernel takes ``k`` from the low bits of
``a s + 1.5 * 2**23``); on each, a polynomial of degree ``DEGREE`` in
``u = a s - k`` (``|u| <= 1/2``) fitted by least squares on Chebyshev nodes,
rounded to float32. ``s`` puts ``A_MAX`` at ``k = 15.49``, so that the
clamped ``a`` never rounds to ``k = 16``. Run: ``python gelu_table.py``.
"""
import math

import numpy as np

DEGREE, INTERVALS, A_MAX, NODES = 5, 16, 5.6, 256


def table():
    s = float(np.float32((INTERVALS - 0.51) / A_MAX))
    u = np.cos(np.pi * (np.arange(NODES) + 0.5) / NODES) / 2
    vander = np.vander(u, DEGREE + 1, increasing=True)
    coef = np.empty((DEGREE + 1, INTERVALS))
    for k in range(INTERVALS):
        q = [0.5 * math.erfc((k + v) / s / math.sqrt(2)) for v in u]
        coef[:, k] = np.linalg.lstsq(vander, q, rcond=None)[0]
    return s, coef.astype(np.float32)


if __name__ == '__main__':
    s, coef = table()
    print(f'inline constexpr float kGeluScale = {s!r}f, '
          f'kGeluMaxAbs = {A_MAX}f;')
    print('alignas(64) inline constexpr float '
          f'kGeluQ[{DEGREE + 1}][{INTERVALS}] = {{')
    for row in coef:
        print('    {' + ', '.join(f'{str(c)}f' for c in row) + '},')
    print('};')
