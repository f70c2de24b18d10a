"""mmincnext.engine.precision: autocast_network runs the network parts in
bf16 and hands float32 to the post-processing."""
import pytest
import torch
import torch.nn as nn

from mmincnext.engine import autocast_network


class Part(nn.Module):
    """A conv that records the dtype it computed in."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.seen = []

    def forward(self, x):
        y = self.conv(x)
        self.seen.append(y.dtype)
        return [y, (y.sum(), torch.tensor([1, 2]),
                    torch.ones(2, dtype=torch.float64))]


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Part()
        self.roi_head = nn.Module()
        self.roi_head.bbox_head = nn.ModuleList([Part(), Part()])
        self.data_preprocessor = Part()  # not a network part: stays fp32


class Wrapper(nn.Module):  # as DDP or a TTA model
    def __init__(self, module):
        super().__init__()
        self.module = module


def test_network_parts_run_in_bf16_and_return_float32():
    det = Detector()
    assert autocast_network(Wrapper(det)) == [
        'backbone', 'roi_head.bbox_head.0', 'roi_head.bbox_head.1']
    x = torch.randn(1, 3, 4, 4)
    for part in (det.backbone, *det.roi_head.bbox_head):
        y, (total, ints, doubles) = part(x)
        assert part.seen == [torch.bfloat16]
        assert y.dtype == total.dtype == torch.float32
        assert ints.dtype == torch.int64 and doubles.dtype == torch.float64
        with torch.no_grad():
            want = part.conv(x)
        assert (y - want).abs().max() < 2e-2 * want.abs().max()
    det.data_preprocessor(x)
    assert det.data_preprocessor.seen == [torch.float32]
    assert not torch.is_autocast_enabled('cpu')


def test_a_model_without_network_parts_is_refused():
    with pytest.raises(ValueError, match='Sequential has none of the '
                       'network parts'):
        autocast_network(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_a_cpu_without_bf16_instructions_is_warned_about(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported',
                        lambda: False)
    with pytest.warns(UserWarning, match='no bf16 instructions'):
        autocast_network(Detector())
