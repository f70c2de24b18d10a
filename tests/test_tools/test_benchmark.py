"""tools/analysis_tools/benchmark.py: the table has every row and column, the
breakdown accounts for the whole network, options it cannot honour are
refused (no timing assertions)."""
import os
import subprocess
import sys

import pytest
from tables import check_limit_table, markdown_tables

from mmincnext import ops

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def test_benchmark_script_smoke():
    """One tiny interleaved round: the table has every row and column (no
    timing assertions)."""
    cmd = [sys.executable, 'tools/analysis_tools/benchmark.py', '--arch',
           'atto', '--input-size', '64', '--batch', '1', '--warmup',
           '0', '--repeats', '1', '--threads', '1']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table, limits = markdown_tables(proc.stdout)
    assert table[0] == ['model', 'mode', 'img/s', 'x ConvNeXt (mmpretrain)',
                        'peak MB', 'params M', 'GMACs/img', '% of peak']
    rows = table[1:]
    assert [(r[0], r[1]) for r in rows] == [
        ('InceptionNeXt', 'inference'),
        ('InceptionNeXt deploy', 'inference'),
        ('InceptionNeXt official (timm)', 'inference'),
        ('ConvNeXt (mmpretrain)', 'inference'),
        ('ConvNeXt (timm, conv_mlp)', 'inference'),
        ('InceptionNeXt', 'train'),
        ('InceptionNeXt official (timm)', 'train'),
        ('ConvNeXt (mmpretrain)', 'train'),
        ('ConvNeXt (timm, conv_mlp)', 'train'),
    ]
    for row in rows:
        assert float(row[2]) > 0 and float(row[4]) >= 0
    by_name = {(r[0], r[1]): r for r in rows}
    # identical weights: ours and the official network have the same size
    ours = by_name[('InceptionNeXt', 'inference')]
    assert ours[5:7] == \
        by_name[('InceptionNeXt official (timm)', 'inference')][5:7]
    assert ours[5] == '2.89' and float(ours[6]) > 0
    assert by_name[('ConvNeXt (mmpretrain)', 'train')][3] == '1.00'
    # the same ConvNeXt in timm (mmpretrain's adds a norm per output)
    assert float(by_name[('ConvNeXt (timm, conv_mlp)', 'train')][5]) == \
        pytest.approx(float(by_name[('ConvNeXt (mmpretrain)', 'train')][5]),
                      rel=0.01)
    # % of peak = 2 MACs img/s (x3 for a train step) over the fp32 peak
    peak = check_limit_table(limits, ops)['fp32']
    for row in rows:
        macs, img_s = float(row[6]), float(row[2])
        flops = 2e9 * macs * (3 if row[1] == 'train' else 1)
        want = flops * img_s / 1e9 / peak * 100
        # the columns' printed precision: GMACs and img/s to 0.005, the
        # peak to 0.5 GFLOP/s, the fraction to 0.5 %
        tol = want * (0.005 / macs + 0.005 / img_s + 0.5 / peak) + 0.5
        assert float(row[7]) == pytest.approx(want, abs=max(tol, 1.5))


@pytest.mark.parametrize('model', ['ours', 'deploy'])
def test_benchmark_breakdown_accounts_for_the_whole_network(model):
    """``--breakdown`` times every part of the network once: the parts'
    MACs add up to the whole forward's, each stage's MLP row has the MACs of
    its GEMMs, and the time shares add up to 100 %."""
    cmd = [sys.executable, 'tools/analysis_tools/benchmark.py', '--breakdown',
           model, '--arch', 'atto', '--input-size', '64', '--batch', '2',
           '--warmup', '0', '--repeats', '1', '--threads', '1']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table, limits = markdown_tables(proc.stdout)
    assert table[0] == ['part', 'ms', '% of time', 'MMACs', '% of peak']
    check_limit_table(limits, ops)
    rows = {r[0]: r[1:] for r in table[1:]}
    depths, dims, ratios = (2, 2, 6, 2), (40, 80, 160, 320), (4, 4, 4, 3)
    # one kernel per block (mmincnext.ops.metanext_block) where the MLP
    # qualifies: channels a multiple of 16, weights of at most 6 MiB
    whole = [ops.cpu_kernels_available() and dim % 16 == 0
             and 2 * dim * dim * ratio * 4 <= 6 * 2**20
             for dim, ratio in zip(dims, ratios)]
    assert whole == [False, True, True, True] or not any(whole)
    expected = ['stem']
    for i, depth in enumerate(depths):
        expected += [f'stage {i} downsample'] if i else []
        expected += ([f'stage {i} blocks ({depth}, one kernel each)']
                     if whole[i] else [f'stage {i} token mixers ({depth})',
                                       f'stage {i} MLPs ({depth})'])
    assert list(rows) == expected + ['sum of the parts', 'whole forward']
    for i, (depth, dim, ratio) in enumerate(zip(depths, dims, ratios)):
        gemm_macs = depth * 2 * (2 * (16 >> i)**2) * dim * dim * ratio
        if whole[i]:  # the GEMMs plus the token mixers and norms
            macs = float(rows[f'stage {i} blocks ({depth}, one kernel each)']
                         [2])
            assert gemm_macs / 1e6 < macs < 1.02 * gemm_macs / 1e6
        else:
            assert float(rows[f'stage {i} MLPs ({depth})'][2]) == \
                pytest.approx(gemm_macs / 1e6, abs=0.05)
    parts = [rows[name] for name in expected]
    whole = float(rows['whole forward'][2])
    assert sum(float(p[2]) for p in parts) == \
        pytest.approx(whole, abs=0.05 * len(parts))
    assert float(rows['sum of the parts'][2]) == pytest.approx(whole,
                                                               abs=0.05)
    assert sum(float(p[1]) for p in parts) == pytest.approx(100, abs=0.5)
    assert sum(float(p[0]) for p in parts) == pytest.approx(
        float(rows['sum of the parts'][0]), abs=0.01 * len(parts))
    assert all(float(p[0]) > 0 for p in parts)
    # options it cannot honour are refused, not ignored
    proc = subprocess.run(cmd + ['--compile'], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and 'nor --compile' in proc.stderr


def load_benchmark():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'benchmark', os.path.join(REPO, 'tools', 'analysis_tools',
                                  'benchmark.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_train_breakdown_times_every_part_both_ways(capsys):
    """``--breakdown train``: every part of the network once, forward and
    backward, with and without the kernels; the speed-ups are the ratios of
    the two columns and the shares add up to 100 % (no timing
    assertions)."""
    bench = load_benchmark()
    argv = ['--breakdown', 'train', '--arch', 'atto', '--input-size', '64',
            '--batch', '2', '--warmup', '0', '--repeats', '1']
    lines = bench.main(argv)
    table, = markdown_tables(capsys.readouterr().out)
    assert table[0] == ['part', 'ms', 'ms, cpu_kernels=False', 'speed-up',
                        '% of time']
    assert table[1:] == lines
    expected = ['stem']
    for i, depth in enumerate((2, 2, 6, 2)):
        expected += [f'stage {i} downsample'] if i else []
        expected += [f'stage {i} token mixers ({depth})',
                     f'stage {i} MLPs ({depth})']
    rows = {r[0]: [float(v) if v != '-' else None for v in r[1:]]
            for r in lines}
    assert list(rows) == expected + ['sum of the parts', 'whole backbone']
    for ms, plain_ms, speed_up, _ in rows.values():
        assert ms > 0 and plain_ms > 0
        assert speed_up == pytest.approx(plain_ms / ms, rel=0.02, abs=0.01)
    parts = [rows[name] for name in expected]
    assert sum(p[3] for p in parts) == pytest.approx(100, abs=0.5)
    for column in (0, 1):
        assert sum(p[column] for p in parts) == pytest.approx(
            rows['sum of the parts'][column], abs=0.01 * len(parts))
    with pytest.raises(SystemExit):  # float32 training only
        bench.parse_args(argv + ['--amp', 'bf16'])


def test_benchmark_yolo_mode_smoke():
    """``--yolo``: MMYOLO's YOLOv8-s (the reference) and our YOLO configs in
    one interleaved inference round, with parameters and FLOPs of the whole
    detector (no timing assertions)."""
    pytest.importorskip('mmyolo')  # only where MMYOLO is not installed
    cmd = [sys.executable, 'tools/analysis_tools/benchmark.py', '--yolo',
           '--input-size', '64', '--batch', '1', '--warmup', '0',
           '--repeats', '1', '--threads', '1', '--yolo-models', 'yolov8_s',
           'yolov8_atto', 'yolov8_atto_p2', 'yolov5_atto_p2']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table, limits = markdown_tables(proc.stdout)
    assert table[0] == ['model', 'mode', 'img/s', 'x YOLOv8-s (MMYOLO)',
                        'peak MB', 'params M', 'GMACs/img', '% of peak']
    check_limit_table(limits, ops)
    rows = {r[0]: r for r in table[1:]}
    assert list(rows) == ['YOLOv8-s (MMYOLO)',
                          'YOLOv8 InceptionNeXt-atto P3-P5',
                          'YOLOv8 InceptionNeXt-atto P2-P5',
                          'YOLOv5 InceptionNeXt-atto P2-P5']
    for row in rows.values():
        assert row[1] == 'inference'
        assert float(row[2]) > 0 and float(row[5]) > 0 and float(row[6]) > 0
    stock = rows['YOLOv8-s (MMYOLO)']
    assert stock[3] == '1.00' and stock[5] == '11.17'  # MMYOLO: 11.2 M
    p3, p2 = (rows[f'YOLOv8 InceptionNeXt-atto {levels}']
              for levels in ('P3-P5', 'P2-P5'))
    # the stride-4 level: a fourth head level, two more C2f layers, and
    # 4x the positions of P3
    assert float(p2[6]) > float(p3[6])
    assert float(p2[5]) > float(p3[5])
    # inference only: the YOLO train step needs MMYOLO's batch format
    proc = subprocess.run(cmd + ['--modes', 'train'], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and 'inference only' in proc.stderr


def test_precision_without_runtime_is_the_autocast_dtype():
    """``--precision bf16`` outside ``--runtime`` means ``--amp bf16``; what
    it cannot mean is refused, not ignored."""
    bench = load_benchmark()
    assert bench.parse_args(['--precision', 'bf16']).amp == 'bf16'
    assert bench.parse_args(['--precision', 'fp32']).amp == 'none'
    assert bench.parse_args(['--runtime', 'torch']).precision == ['fp32']
    for argv in (['--precision', 'fp32', 'bf16'],
                 ['--precision', 'bf16', '--amp', 'bf16']):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
