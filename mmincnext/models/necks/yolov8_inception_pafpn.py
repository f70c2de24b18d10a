"""A YOLOv8 neck whose CSP layers use InceptionNeXt's MetaNeXt blocks.

MMYOLO's :class:`~mmyolo.models.necks.YOLOv8PAFPN` fuses the levels with
``CSPLayerWithTwoConv`` (Ultralytics' ``C2f``), whose bottlenecks are pairs of
dense 3x3 convolutions. :class:`C2fMetaNeXt` keeps that layer's split /
concatenate structure and 1x1 convolutions and replaces each bottleneck by a
:class:`~mmincnext.models.backbones.inception_next.MetaNeXtBlock`, the block
of the InceptionNeXt backbone (Inception depthwise token mixer, BatchNorm,
1x1-conv MLP, layer scale, residual), as the "YOLO + InceptionNeXt" variants
do. :class:`YOLOv8InceptionPAFPN` is YOLOv8PAFPN with this layer in its
top-down and bottom-up paths; everything else (identity reduce layers,
nearest upsampling, 3x3 stride-2 downsampling ConvModules, any number of
levels) is MMYOLO's.

Read in data-flow order: the CSP layer, then the neck.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmyolo.models.necks import YOLOv8PAFPN
from mmyolo.models.utils import make_divisible, make_round

from mmincnext.registry import MODELS, register_everywhere
from ..backbones.inception_next import MetaNeXtBlock

__all__ = ['C2fMetaNeXt', 'YOLOv8InceptionPAFPN']

#: InceptionNeXt's token mixer: 3x3 square kernel, 11-long bands, 1/8 of the
#: channels per conv branch (the backbone's ``arch`` defaults)
DEFAULT_MIXER_CFG = dict(square_kernel_size=3, band_kernel_size=11,
                         branch_ratio=0.125)


@register_everywhere(MODELS)
class C2fMetaNeXt(BaseModule):
    """``CSPLayerWithTwoConv`` (YOLOv8's C2f) with MetaNeXt bottlenecks.

    Data flow, with ``mid = int(out_channels * expand_ratio)``:

    1. ``main_conv``: 1x1 ConvModule (conv, norm, act), ``in_channels`` ->
       ``2 * mid``; split into two halves of ``mid`` channels;
    2. ``blocks``: ``num_blocks`` :class:`MetaNeXtBlock` of ``mid`` channels
       in sequence on the second half (in channels-last memory), every
       block output kept;
    3. concatenate both halves and every block output,
       ``(2 + num_blocks) * mid`` channels;
    4. ``final_conv``: 1x1 ConvModule to ``out_channels``.

    The module names and channel arithmetic are those of MMYOLO's
    ``CSPLayerWithTwoConv``. A MetaNeXt block always adds its input (the
    residual is part of the block), so there is no ``add_identity``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        expand_ratio (float): ``mid / out_channels``. Defaults to 0.5.
        num_blocks (int): Number of MetaNeXt blocks. Defaults to 1.
        mixer_cfg (dict, optional): Keyword arguments of the blocks' Inception
            depthwise convolution (``square_kernel_size``,
            ``band_kernel_size``, ``branch_ratio``); ``branch_ratio * mid``
            must be at least 1. Defaults to InceptionNeXt's (3, 11, 0.125).
        mlp_ratio (float): Hidden width of each block's MLP relative to
            ``mid``. Defaults to 4.
        layer_scale_init_value (float): Initial value of each block's
            per-channel scale ``gamma`` (0 disables it). Defaults to 1e-6.
        drop_path_rate (float or Sequence[float]): Stochastic depth rate of
            the blocks, one value for all or one per block. Defaults to 0.
        conv_cfg (dict, optional): Convolution config of the two
            ConvModules. Defaults to None (``nn.Conv2d``).
        norm_cfg (dict): Norm config of the two ConvModules and of the
            norm inside each block. Defaults to MMYOLO's
            ``dict(type='BN', momentum=0.03, eps=0.001)``.
        act_cfg (dict): Activation of the two ConvModules (the blocks use
            GELU in their MLP). Defaults to ``dict(type='SiLU',
            inplace=True)``.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 expand_ratio: float = 0.5,
                 num_blocks: int = 1,
                 mixer_cfg: Optional[dict] = None,
                 mlp_ratio: float = 4.,
                 layer_scale_init_value: float = 1e-6,
                 drop_path_rate=0.,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: dict = dict(type='SiLU', inplace=True),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if num_blocks < 1:
            raise ValueError(f'num_blocks must be >= 1, got {num_blocks}')
        self.mid_channels = int(out_channels * expand_ratio)
        if isinstance(drop_path_rate, (int, float)):
            drop_path_rate = [float(drop_path_rate)] * num_blocks
        if len(drop_path_rate) != num_blocks:
            raise ValueError(
                f'{len(drop_path_rate)} drop path rates for {num_blocks} '
                'blocks')
        mixer_cfg = dict(DEFAULT_MIXER_CFG, **(mixer_cfg or {}))
        self.main_conv = ConvModule(
            in_channels, 2 * self.mid_channels, 1, conv_cfg=conv_cfg,
            norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.blocks = nn.ModuleList(
            MetaNeXtBlock(
                self.mid_channels,
                mixer_cfg=mixer_cfg,
                norm_cfg=norm_cfg,
                mlp_ratio=mlp_ratio,
                layer_scale_init_value=layer_scale_init_value,
                drop_path_rate=rate) for rate in drop_path_rate)
        self.final_conv = ConvModule(
            (2 + num_blocks) * self.mid_channels, out_channels, 1,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        # the blocks run channels-last, as in the backbone: their depthwise
        # convs are faster on it, and in CPU inference mmincnext's compiled
        # kernels take it (shapes, names and values are unchanged)
        self.blocks.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_main = list(self.main_conv(x).split(
            (self.mid_channels, self.mid_channels), 1))
        for block in self.blocks:
            x_main.append(block(
                x_main[-1].contiguous(memory_format=torch.channels_last)))
        return self.final_conv(torch.cat(x_main, 1))

    def init_blocks(self):
        """InceptionNeXt's init of the blocks' convolutions: truncated normal
        (std 0.02) weights, zero biases (the layer scales keep their
        ``layer_scale_init_value``)."""
        for m in self.blocks.modules():
            if isinstance(m, nn.Conv2d):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)


@register_everywhere(MODELS)
class YOLOv8InceptionPAFPN(YOLOv8PAFPN):
    """YOLOv8PAFPN with :class:`C2fMetaNeXt` in place of its C2f layers.

    Data flow (MMYOLO's ``BaseYOLONeck``, for ``L`` levels, finest first):
    identity reduce layers; top-down from the coarsest level: upsample x2
    (nearest), concatenate with the next finer input, a top-down
    :class:`C2fMetaNeXt`; bottom-up from the finest fused map: 3x3 stride-2
    ConvModule, concatenate with the top-down map of the next coarser
    level, a bottom-up :class:`C2fMetaNeXt`; identity out layers. With four
    inputs (strides 4, 8, 16, 32) it outputs P2-P5.

    Channels: the reduce layers are identities, so each output has its
    input's width: ``out_channels`` must equal ``in_channels``, both
    scaled by ``widen_factor`` (MMYOLO's ``make_divisible``) to the widths
    the backbone returns; with ``widen_factor=1.0`` they are the backbone's
    ``out_channels``. The C2f layers get YOLOv8PAFPN's widths: top-down
    layer ``i`` maps ``in[i-1] + in[i]`` to ``out[i-1]``, bottom-up layer
    ``i`` maps ``out[i] + out[i+1]`` to ``out[i+1]``; each holds
    ``make_round(num_csp_blocks, deepen_factor)`` MetaNeXt blocks.

    Args:
        in_channels (List[int]): Input channels per level, finest first.
        out_channels (List[int]): Output channels per level; must equal
            ``in_channels``.
        deepen_factor (float): Multiplier of ``num_csp_blocks``. Defaults
            to 1.0.
        widen_factor (float): Multiplier of the channels. Defaults to 1.0.
        num_csp_blocks (int): MetaNeXt blocks per C2f layer before
            ``deepen_factor``. Defaults to 3.
        mixer_cfg (dict, optional): Token mixer of the blocks, see
            :class:`C2fMetaNeXt`. Defaults to InceptionNeXt's.
        mlp_ratio (float): MLP ratio of the blocks. Defaults to 4.
        layer_scale_init_value (float): Initial layer scale of the blocks.
            Defaults to 1e-6.
        drop_path_rate (float): Stochastic depth rate of every block.
            Defaults to 0.
        freeze_all (bool): Freeze the whole neck. Defaults to False.
        norm_cfg (dict): Norm config. Defaults to
            ``dict(type='BN', momentum=0.03, eps=0.001)``.
        act_cfg (dict): Activation of the ConvModules. Defaults to
            ``dict(type='SiLU', inplace=True)``.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to None: MMYOLO's reset of every ``Conv2d``, then
            InceptionNeXt's init of the blocks.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: List[int],
                 deepen_factor: float = 1.0,
                 widen_factor: float = 1.0,
                 num_csp_blocks: int = 3,
                 mixer_cfg: Optional[dict] = None,
                 mlp_ratio: float = 4.,
                 layer_scale_init_value: float = 1e-6,
                 drop_path_rate: float = 0.,
                 freeze_all: bool = False,
                 norm_cfg: dict = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: dict = dict(type='SiLU', inplace=True),
                 init_cfg=None):
        if not isinstance(out_channels, Sequence) or \
                list(out_channels) != list(in_channels):
            raise ValueError(
                'YOLOv8InceptionPAFPN (as YOLOv8PAFPN) has identity reduce '
                'layers: out_channels must equal in_channels, got '
                f'in_channels={list(in_channels)}, '
                f'out_channels={out_channels}')
        if len(in_channels) < 2:
            raise ValueError('YOLOv8InceptionPAFPN fuses at least 2 levels, '
                             f'got in_channels={list(in_channels)}')
        # read by the build_*_layer methods that the base __init__ calls
        self.block_cfg = dict(
            mixer_cfg=mixer_cfg, mlp_ratio=mlp_ratio,
            layer_scale_init_value=layer_scale_init_value,
            drop_path_rate=drop_path_rate)
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            deepen_factor=deepen_factor,
            widen_factor=widen_factor,
            num_csp_blocks=num_csp_blocks,
            freeze_all=freeze_all,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            init_cfg=init_cfg)

    def _c2f(self, in_channels: int, out_channels: int) -> C2fMetaNeXt:
        return C2fMetaNeXt(
            make_divisible(in_channels, self.widen_factor),
            make_divisible(out_channels, self.widen_factor),
            num_blocks=make_round(self.num_csp_blocks, self.deepen_factor),
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg,
            **self.block_cfg)

    def build_top_down_layer(self, idx: int) -> nn.Module:
        """The C2fMetaNeXt that fuses level ``idx`` (upsampled) with level
        ``idx - 1``: ``in[idx-1] + in[idx]`` -> ``out[idx-1]``."""
        return self._c2f(self.in_channels[idx - 1] + self.in_channels[idx],
                         self.out_channels[idx - 1])

    def build_bottom_up_layer(self, idx: int) -> nn.Module:
        """The C2fMetaNeXt that fuses level ``idx`` (downsampled) with level
        ``idx + 1``: ``out[idx] + out[idx+1]`` -> ``out[idx+1]``."""
        return self._c2f(self.out_channels[idx] + self.out_channels[idx + 1],
                         self.out_channels[idx + 1])

    def init_weights(self):
        """MMYOLO's neck init (every ``Conv2d`` reset to PyTorch's default
        unless ``init_cfg`` is set), then InceptionNeXt's init of the
        MetaNeXt blocks."""
        super().init_weights()
        if self.init_cfg is None:
            for m in self.modules():
                if isinstance(m, C2fMetaNeXt):
                    m.init_blocks()
