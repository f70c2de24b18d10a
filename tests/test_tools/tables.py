"""Parsing the markdown tables that tools/analysis_tools/benchmark.py
prints."""


def markdown_tables(text):
    """Every markdown table in ``text``: a list of tables, each a list of
    rows of stripped cells, the header first (the ``|---|`` line dropped)."""
    tables, current = [], None
    for line in text.splitlines():
        if not line.startswith('|'):
            current = None
            continue
        if current is None:
            current = []
            tables.append(current)
        if not set(line) <= set('|-: '):
            current.append([c.strip() for c in line.strip('|').split('|')])
    return tables


def check_limit_table(table, ops):
    """The limit table under a benchmark table: every GEMM it times, one
    peak per dtype, the peak the best GEMM's rate, the FMA loop (where the
    kernels are built) marked as the ceiling and not taken as the peak;
    returns ``{dtype: GFLOP/s}``."""
    import torch
    assert table[0] == ['limit', 'GEMM', 'GFLOP/s']
    gemms = [(r[0], r[1]) for r in table[1:]]
    want = [('fp32', 'torch.mm (BLAS)'), ('fp32', 'oneDNN 1x1 conv')]
    if ops.cpu_kernels_available():
        want += [('fp32', 'mmincnext fused_mlp'),
                 ('fp32', 'mmincnext FMA loop')]
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        want += [('bf16', 'torch.mm (oneDNN)'), ('bf16', 'oneDNN 1x1 conv')]
    assert gemms == want
    ceilings = [r for r in table[1:] if r[2].endswith(' (ceiling)')]
    assert [r[:2] for r in ceilings] == [
        ['fp32', 'mmincnext FMA loop']
    ] * ops.cpu_kernels_available()
    assert all(float(r[2].split()[0]) > 0 for r in ceilings)
    peaks = {}
    for dtype in {d for d, _ in gemms}:
        rates = {r[1]: r[2] for r in table[1:]
                 if r[0] == dtype and r not in ceilings}
        marked = [g for g, rate in rates.items() if rate.endswith(' (peak)')]
        assert len(marked) == 1, rates
        values = {g: float(rate.split()[0]) for g, rate in rates.items()}
        assert values[marked[0]] == max(values.values())
        peaks[dtype] = values[marked[0]]
    return peaks
