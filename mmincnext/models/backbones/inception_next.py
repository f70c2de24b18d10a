"""InceptionNeXt backbone for dense prediction (detection, segmentation).

`InceptionNeXt: When Inception Meets ConvNeXt <https://arxiv.org/abs/2303.16900>`_
(CVPR 2024). Official code and weights: https://github.com/sail-sg/inceptionnext.

The modules and parameter names follow the official implementation (and timm's
``inception_next.py``), so the released ImageNet checkpoints load without any
key conversion. Read top to bottom in data-flow order: token mixer, MLP,
block, stage, network.
"""
import re
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmengine.runner.checkpoint import CheckpointLoader
from torch.nn.modules.batchnorm import _BatchNorm

from mmincnext import ops
from mmincnext.registry import MODELS, register_everywhere


class InceptionDWConv2d(nn.Module):
    """Inception depthwise convolution (the token mixer).

    The channels are split **identity first** into ``(C - 3*gc, gc, gc, gc)``:
    the first group passes unchanged, the others go through a square depthwise
    conv, a horizontal band (1 x k) and a vertical band (k x 1) depthwise conv.
    This is the order of the official code and weights (the paper's Algorithm 1
    lists the identity last).

    Args:
        in_channels (int): Number of channels C.
        square_kernel_size (int): Kernel of the square branch. Defaults to 3.
        band_kernel_size (int): Length k of the band kernels. Defaults to 11.
        branch_ratio (float): Share of channels per conv branch,
            ``gc = int(C * branch_ratio)``. Defaults to 0.125.
    """

    def __init__(self,
                 in_channels: int,
                 square_kernel_size: int = 3,
                 band_kernel_size: int = 11,
                 branch_ratio: float = 0.125):
        super().__init__()
        gc = int(in_channels * branch_ratio)
        if gc < 1 or in_channels - 3 * gc < 0:
            raise ValueError(
                f'branch_ratio={branch_ratio} gives {gc} channels per conv '
                f'branch for {in_channels} channels; need 1 <= gc <= C/3')
        self.dwconv_hw = nn.Conv2d(
            gc, gc, square_kernel_size, padding=square_kernel_size // 2,
            groups=gc)
        self.dwconv_w = nn.Conv2d(
            gc, gc, kernel_size=(1, band_kernel_size),
            padding=(0, band_kernel_size // 2), groups=gc)
        self.dwconv_h = nn.Conv2d(
            gc, gc, kernel_size=(band_kernel_size, 1),
            padding=(band_kernel_size // 2, 0), groups=gc)
        self.split_indexes = (in_channels - 3 * gc, gc, gc, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_id, x_hw, x_w, x_h = torch.split(x, self.split_indexes, dim=1)
        return torch.cat(
            (x_id, self.dwconv_hw(x_hw), self.dwconv_w(x_w),
             self.dwconv_h(x_h)),
            dim=1)


class ConvMlp(nn.Module):
    """1x1 conv -> GELU -> 1x1 conv (official names ``fc1``, ``fc2``).

    The 1x1 convs keep their official ``Conv2d`` parameters, but are applied
    as matrix products (``F.linear``) on ``(N, H, W, C)`` tensors: on the
    channels-last activations the network uses, that is a free view and one
    BLAS GEMM per layer (a 1x1 ``Conv2d`` goes through a slower conv path).
    """

    def __init__(self, in_channels: int, hidden_channels: int):
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden_channels, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_channels, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) -> (N, H, W, C)."""
        x = F.linear(x, self.fc1.weight.flatten(1), self.fc1.bias)
        x = self.act(x)
        return F.linear(x, self.fc2.weight.flatten(1), self.fc2.bias)


# Inference on CPU runs the MLP over row blocks of the (N*H*W, C) activations
# whose hidden activations (rows x 4C) take about this many bytes, so that
# they stay in the last-level cache between fc1 and fc2 instead of making a
# round trip through memory (measured +6-8 % for the tiny network at 224 and
# 512 px on a 2-core Xeon with 36 MB of L3; 2-4 MiB blocks gained nothing,
# 6-16 MiB about the same). Inputs of at most two blocks go in one piece.
MLP_BLOCK_BYTES = 8 * 2**20

# mmincnext's compiled MLP kernel (``mmincnext.ops.fused_mlp``, also the MLP
# part of ``mmincnext.ops.metanext_block``) streams row blocks through fc1,
# GELU and fc2 with their hidden activations in L2: all of them where both
# weights fit in L2 (stages 0-1 of tiny: 0.3 and 1.2 MB), else 384 hidden
# units at a time (stage 2: 4.7 MB). Where the weights take at most this many
# bytes it runs a tiny block at 80-90 % of the large-GEMM rate against 42-76 %
# for oneDNN's two GEMMs and the mixer kernel; for larger weights (base's
# stage 2, 8.4 MB: on par; tiny's stage 3, 19 MB: 70 % against 80 %) oneDNN's
# blocking of the weights wins.
FUSED_MLP_MAX_WEIGHT_BYTES = 6 * 2**20


class MetaNeXtBlock(nn.Module):
    """``x + drop_path(gamma * mlp(norm(token_mixer(x))))``.

    Activations are NCHW tensors in channels-last memory (see
    :class:`InceptionNeXt`); the MLP runs on their free ``(N, H, W, C)`` view.

    Args:
        dim (int): Number of channels.
        mixer_cfg (dict): Keyword arguments of :class:`InceptionDWConv2d`.
        norm_cfg (dict): Config of the norm after the token mixer.
        mlp_ratio (float): Hidden width of the MLP relative to ``dim``.
        layer_scale_init_value (float): Init of the per-channel scale
            ``gamma``; 0 disables it.
        drop_path_rate (float): Stochastic depth rate of this block.
        cpu_kernels (bool): Run CPU inference with mmincnext's compiled
            kernels where they apply (see :class:`InceptionNeXt`).
    """

    def __init__(self,
                 dim: int,
                 mixer_cfg: dict,
                 norm_cfg: dict = dict(type='BN'),
                 mlp_ratio: float = 4.,
                 layer_scale_init_value: float = 1e-6,
                 drop_path_rate: float = 0.,
                 cpu_kernels: bool = True):
        super().__init__()
        self.token_mixer = InceptionDWConv2d(dim, **mixer_cfg)
        self.norm = build_norm_layer(norm_cfg, dim)[1]
        self.mlp = ConvMlp(dim, int(mlp_ratio * dim))
        if layer_scale_init_value > 0:
            self.gamma = nn.Parameter(
                layer_scale_init_value * torch.ones(dim))
        else:
            self.gamma = None
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0. else nn.Identity()
        self.cpu_kernels = cpu_kernels
        self.deploy = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and not torch.is_grad_enabled():
            return self._forward_inference(x)
        shortcut = x
        x = self.norm(self.token_mixer(x))  # norm: Identity after deploy
        x = self.mlp(x.permute(0, 2, 3, 1))
        if self.gamma is not None:
            x = x * self.gamma
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """The block without autograd, in eval mode.

        On CPU in float32 with the compiled kernels (see
        :class:`InceptionNeXt`, ``cpu_kernels``), the token mixer and the
        block norm (a BatchNorm's running statistics, as a per-channel
        affine) run as one pass of :func:`mmincnext.ops.inception_mixer`;
        where the MLP qualifies for :func:`mmincnext.ops.fused_mlp` (see
        :func:`_fused_mlp_fits`) the whole block is one call of
        :func:`mmincnext.ops.metanext_block`, whose mixer output never
        leaves L2. Otherwise PyTorch's modules, then :meth:`_mlp_inference`.
        """
        norm, whole = self._inference_plan(x)
        if whole:
            fc1 = self.mlp.fc1
            w2, b2 = self._fc2_scaled()
            return ops.metanext_block(x, self.token_mixer, *norm,
                                      fc1.weight.flatten(1), fc1.bias, w2, b2)
        return self._mlp_inference(self._mix_inference(x, norm), x)

    def _inference_plan(self, x: torch.Tensor) -> tuple:
        """``(norm, whole)`` for the block input ``x``: ``norm`` is the block
        norm as the kernels take it (:meth:`_norm_affine`), or None where
        the kernels do not apply; ``whole`` tells whether
        :func:`mmincnext.ops.metanext_block` runs the whole block."""
        if not (self.cpu_kernels and _cpu_kernels_apply(x)):
            return None, False
        norm = self._norm_affine()
        return norm, norm is not None and _fused_mlp_fits(
            self.mlp.fc1.weight.flatten(1))

    def _mix_inference(self, x: torch.Tensor,
                       norm: Optional[tuple]) -> torch.Tensor:
        """``norm(token_mixer(x))``: one kernel call where ``norm`` (from
        :meth:`_inference_plan`) is given, else PyTorch's modules."""
        if norm is None:
            return self.norm(self.token_mixer(x))
        return ops.inception_mixer(x, self.token_mixer, *norm)

    def _norm_affine(self) -> Optional[tuple]:
        """``(scale, shift)`` of the block norm as a per-channel affine,
        ``(None, None)`` without one (deploy), ``None`` if it is not an
        affine (a BatchNorm in training mode or without running statistics,
        another norm)."""
        if isinstance(self.norm, nn.Identity):
            return None, None
        if isinstance(self.norm, _BatchNorm) and not self.norm.training \
                and self.norm.running_mean is not None:
            return _bn_scale_shift(self.norm)
        return None

    def _fc2_scaled(self) -> tuple:
        """``fc2``'s weight ``[C, H]`` and bias times ``gamma``."""
        fc2 = self.mlp.fc2
        w2, b2 = fc2.weight.flatten(1), fc2.bias
        if self.gamma is not None:
            w2, b2 = w2 * self.gamma[:, None], b2 * self.gamma
        return w2, b2

    def _mlp_inference(self, x: torch.Tensor,
                       shortcut: torch.Tensor) -> torch.Tensor:
        """``shortcut + gamma * fc2(gelu(fc1(x)))`` without autograd, ``x``
        being the normed token mixer output.

        On CPU, in float32, with weights of at most
        ``FUSED_MLP_MAX_WEIGHT_BYTES``, mmincnext's compiled kernel runs the
        whole MLP (``gamma`` folded into ``fc2``) in row blocks whose hidden
        activations (or chunks of them) stay in L2. Otherwise on CPU, oneDNN
        runs each GEMM with its epilogue fused: bias and GELU into ``fc1``;
        bias and, once :meth:`switch_to_deploy` has folded ``gamma`` into
        ``fc2``, the residual sum into ``fc2`` (else one ``addcmul``). That
        saves three to four passes over the activations; large inputs go
        through the MLP in row blocks of about ``MLP_BLOCK_BYTES`` of hidden
        activations, which stay in cache. Elsewhere (GPU, ``torch.compile``)
        the residual sum is the GEMM's accumulator (``addmm``) or an
        ``addcmul``."""
        x, shortcut = x.permute(0, 2, 3, 1), shortcut.permute(0, 2, 3, 1)
        fc1, fc2 = self.mlp.fc1, self.mlp.fc2
        w1, w2 = fc1.weight.flatten(1), fc2.weight.flatten(1)
        if self.cpu_kernels and _fused_mlp_applies(x, shortcut, w1, w2):
            w2, b2 = self._fc2_scaled()
            n, h, w, c = x.shape
            x = ops.fused_mlp(x.reshape(-1, c), shortcut.reshape(-1, c), w1,
                              fc1.bias, w2, b2).view(n, h, w, c)
        elif _onednn_fusion_applies(x, shortcut, w1, w2):
            rows = max(1, MLP_BLOCK_BYTES // (w1.shape[0] * x.element_size()))
            if x.shape[:-1].numel() <= 2 * rows:
                x = self._mlp_onednn(x, shortcut, w1, w2)
            else:  # row blocks that keep the hidden activations in cache
                n, h, w, c = x.shape
                x, shortcut = x.reshape(-1, c), shortcut.reshape(-1, c)
                out = torch.empty_like(shortcut)
                for i in range(0, x.shape[0], rows):
                    out[i:i + rows] = self._mlp_onednn(
                        x[i:i + rows], shortcut[i:i + rows], w1, w2)
                x = out.view(n, h, w, c)
        else:
            x = self.mlp.act(F.linear(x, w1, fc1.bias))
            if self.gamma is None:
                n, h, w, c = shortcut.shape
                x = torch.addmm(shortcut.reshape(n * h * w, c),
                                x.reshape(n * h * w, -1), w2.t())
                x = x.add_(fc2.bias).view(n, h, w, c)
            else:
                x = torch.addcmul(shortcut, F.linear(x, w2, fc2.bias),
                                  self.gamma)
        return x.permute(0, 3, 1, 2)

    def _mlp_onednn(self, x: torch.Tensor, shortcut: torch.Tensor,
                    w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        """``shortcut + gamma * fc2(gelu(fc1(x)))`` with oneDNN's fused
        epilogues (contiguous CPU tensors, channels last)."""
        fc1, fc2 = self.mlp.fc1, self.mlp.fc2
        linear = torch.ops.mkldnn._linear_pointwise
        x = linear(x, w1, fc1.bias, 'gelu', [], 'none')
        if self.gamma is None:
            return linear.binary(x, shortcut, w2, fc2.bias, 'add')
        return torch.addcmul(shortcut, linear(x, w2, fc2.bias, 'none', [], ''),
                             self.gamma)

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold ``norm`` (a BatchNorm in eval mode) into ``fc1`` and ``gamma``
        into ``fc2``; one-way, for inference."""
        if self.deploy:
            return
        self.mlp.fc1 = _fold_bn_before(self.norm, self.mlp.fc1)
        self.norm = nn.Identity()
        if self.gamma is not None:
            fc2 = self.mlp.fc2
            fc2.weight.mul_(self.gamma.view(-1, 1, 1, 1))
            fc2.bias.mul_(self.gamma)
            self.gamma = None
        self.deploy = True


class MetaNeXtStage(nn.Module):
    """An optional downsample (norm, then 2x2 stride-2 conv) and the blocks.

    Args:
        in_channels (int): Channels entering the stage.
        out_channels (int): Channels of the blocks.
        depth (int): Number of blocks.
        downsample (bool): Whether the stage starts with a downsample.
        drop_path_rates (Sequence[float]): One rate per block.
        with_cp (bool): Gradient checkpointing per block.
        **block_kwargs: Passed to :class:`MetaNeXtBlock`.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 depth: int,
                 downsample: bool,
                 drop_path_rates: Sequence[float],
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False,
                 **block_kwargs):
        super().__init__()
        if downsample:
            self.downsample = nn.Sequential(
                build_norm_layer(norm_cfg, in_channels)[1],
                nn.Conv2d(in_channels, out_channels, 2, stride=2))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[
            MetaNeXtBlock(out_channels, norm_cfg=norm_cfg,
                          drop_path_rate=drop_path_rates[i], **block_kwargs)
            for i in range(depth)
        ])
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.with_cp and x.requires_grad:
            for block in self.blocks:
                x = cp.checkpoint(block, x, use_reentrant=False)
            return x
        return self.blocks(x)


@register_everywhere(MODELS)
class InceptionNeXt(BaseModule):
    """InceptionNeXt backbone with multi-scale outputs.

    A PyTorch implementation of `InceptionNeXt: When Inception Meets ConvNeXt
    <https://arxiv.org/abs/2303.16900>`_, with the official parameter names:
    ``stem``, ``stages.N.downsample``, ``stages.N.blocks.M.{token_mixer, norm,
    mlp, gamma}``. The classification head is not built.

    Args:
        arch (str | dict): One of :attr:`arch_settings` (``'atto'``,
            ``'tiny'``, ``'small'``, ``'base'``, short forms ``'a'``, ``'t'``,
            ``'s'``, ``'b'``) or a dict with the keys ``depths``, ``dims``
            (4 ints each) and optionally ``band_kernel_size`` (11),
            ``branch_ratio`` (0.125), ``square_kernel_size`` (3) and
            ``mlp_ratios`` (``(4, 4, 4, 3)``). Defaults to ``'tiny'``.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned
            (strides 4, 8, 16, 32); negative indices count from the end. Stages
            after the last one requested are not built. Defaults to
            ``(0, 1, 2, 3)``.
        norm_cfg (dict): Norm used inside the network (stem, downsamples,
            blocks). Use ``dict(type='SyncBN')`` for multi-GPU segmentation.
            Defaults to ``dict(type='BN')``.
        out_norm_cfg (dict, optional): Extra norm on each returned output
            (``norm{i}``), the authors' dense-prediction recipe. ``None``
            returns the raw stage outputs, exactly as the official network
            computes them. Defaults to None.
        drop_path_rate (float): Stochastic depth, rising linearly from 0 over
            all blocks. Defaults to 0.
        layer_scale_init_value (float): Init of the blocks' ``gamma``.
            Defaults to 1e-6.
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` the
            stem and stages ``0..k-1`` (with their output norms): no gradients
            and kept in eval mode. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode while training
            (frozen statistics). Defaults to False.
        with_cp (bool): Gradient checkpointing of each block (less memory,
            slower). Defaults to False.
        cpu_kernels (bool): In CPU inference (eval mode, float32, no
            autograd, eager), use mmincnext's compiled kernels when they are
            built (``mmincnext.ops.cpu_kernels_available()``): every token
            mixer with its block norm runs as one pass
            (``mmincnext.ops.inception_mixer``), and in the stages with
            channels a multiple of 16 and MLP weights of at most 6 MiB (the
            first three of tiny and small, the first two of base) the whole
            block is one kernel (``mmincnext.ops.metanext_block``). Outputs
            match PyTorch's modules within float32 rounding. Defaults to True.
        init_cfg (dict | list[dict], optional): Initialization.
            ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads an
            official/timm ImageNet checkpoint (plain, ``state_dict``/``model``
            wrapped, ``module.``/``backbone.`` prefixed; the head is dropped)
            and fails on a checkpoint of another architecture or size.
            Defaults to None (truncated-normal init as the official code).

    Example:
        >>> import torch
        >>> from mmincnext.models import InceptionNeXt
        >>> model = InceptionNeXt('atto', out_indices=(1, 2, 3)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 97, 131))]
        [(1, 80, 12, 16), (1, 160, 6, 8), (1, 320, 3, 4)]
    """

    arch_settings: Dict[str, dict] = {
        'atto': dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320),
                     band_kernel_size=9, branch_ratio=0.25),
        'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
        'small': dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
        'base': dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
    }
    arch_aliases = {'a': 'atto', 't': 'tiny', 's': 'small', 'b': 'base',
                    'base_384': 'base'}
    arch_defaults = dict(band_kernel_size=11, branch_ratio=0.125,
                         square_kernel_size=3, mlp_ratios=(4, 4, 4, 3))
    num_stages = 4
    stem_stride = 4

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 norm_cfg: dict = dict(type='BN'),
                 out_norm_cfg: Optional[dict] = None,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 cpu_kernels: bool = True,
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch = self.parse_arch(arch)
        depths, dims = self.arch['depths'], self.arch['dims']
        self.out_indices = self.parse_out_indices(out_indices)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f'frozen_stages must be in [-1, {self.num_stages}], '
                f'got {frozen_stages}')
        if frozen_stages > self.out_indices[-1] + 1:
            raise ValueError(
                f'frozen_stages={frozen_stages} freezes stages that are not '
                f'built (out_indices={self.out_indices})')
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = False

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, dims[0], self.stem_stride,
                      stride=self.stem_stride),
            build_norm_layer(norm_cfg, dims[0])[1])

        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        mixer_cfg = dict(
            square_kernel_size=self.arch['square_kernel_size'],
            band_kernel_size=self.arch['band_kernel_size'],
            branch_ratio=self.arch['branch_ratio'])
        self.num_built_stages = self.out_indices[-1] + 1
        self.stages = nn.Sequential()
        for i in range(self.num_built_stages):
            first = sum(depths[:i])
            self.stages.append(
                MetaNeXtStage(
                    in_channels=dims[max(i - 1, 0)],
                    out_channels=dims[i],
                    depth=depths[i],
                    downsample=i > 0,
                    drop_path_rates=dpr[first:first + depths[i]],
                    norm_cfg=norm_cfg,
                    with_cp=with_cp,
                    mixer_cfg=mixer_cfg,
                    mlp_ratio=self.arch['mlp_ratios'][i],
                    layer_scale_init_value=layer_scale_init_value,
                    cpu_kernels=cpu_kernels))

        self.out_norm_cfg = out_norm_cfg
        if out_norm_cfg is not None:
            for i in self.out_indices:
                self.add_module(f'norm{i}',
                                build_norm_layer(out_norm_cfg, dims[i])[1])
        self.out_channels = [dims[i] for i in self.out_indices]
        self._freeze_stages()
        # Channels-last conv weights make every conv, and thus every
        # activation, channels-last (NHWC in memory): the depthwise convs are
        # several times faster on it, the channel split of the token mixer is
        # a view, and the 1x1 convs of the MLP become GEMMs on free
        # (N, H, W, C) views. Shapes, names and values are unchanged.
        self.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------
    # arguments
    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        """Resolve ``arch`` into a complete, validated settings dict."""
        if isinstance(arch, str):
            name = cls.arch_aliases.get(arch.lower(), arch.lower())
            if name not in cls.arch_settings:
                raise ValueError(
                    f'unknown InceptionNeXt arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_settings)} (or '
                    f'{sorted(cls.arch_aliases)}) or pass a dict')
            arch = cls.arch_settings[name]
        elif not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or dict, got {type(arch)}')
        missing = {'depths', 'dims'} - set(arch)
        if missing:
            raise ValueError(
                f'arch dict misses key(s) {sorted(missing)}; it needs '
                "'depths' and 'dims' (4 ints each)")
        unknown = set(arch) - {'depths', 'dims'} - set(cls.arch_defaults)
        if unknown:
            raise ValueError(
                f'arch dict has unknown key(s) {sorted(unknown)}; allowed: '
                f"{['depths', 'dims'] + sorted(cls.arch_defaults)}")
        settings = {**cls.arch_defaults, **arch}
        for key in ('depths', 'dims', 'mlp_ratios'):
            value = settings[key]
            if len(value) != cls.num_stages or any(v <= 0 for v in value):
                raise ValueError(
                    f'arch[{key!r}] must hold {cls.num_stages} positive '
                    f'numbers, got {value}')
            settings[key] = tuple(value)
        for key in ('depths', 'dims'):
            if any(int(v) != v for v in settings[key]):
                raise ValueError(f'arch[{key!r}] must be ints, got '
                                 f'{settings[key]}')
        for key in ('band_kernel_size', 'square_kernel_size'):
            k = settings[key]
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(
                    f'arch[{key!r}] must be a positive odd int, got {k}')
        ratio = settings['branch_ratio']
        if not 0 < ratio <= 1 / 3:
            raise ValueError(
                f"arch['branch_ratio'] must be in (0, 1/3], got {ratio}")
        small = [d for d in settings['dims'] if int(d * ratio) < 1]
        if small:
            raise ValueError(
                f"arch['branch_ratio']={ratio} leaves no channel for the conv "
                f'branches of dims {small}')
        return settings

    @classmethod
    def parse_out_indices(cls, out_indices) -> tuple:
        """Normalise ``out_indices`` to sorted, non-negative, unique ints."""
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or len(out_indices) == 0:
            raise ValueError(
                'out_indices must be an int or a non-empty sequence of ints, '
                f'got {out_indices!r}')
        parsed = []
        for index in out_indices:
            if not isinstance(index, int) or not \
                    -cls.num_stages <= index < cls.num_stages:
                raise ValueError(
                    f'out_indices entry {index!r} is out of range for '
                    f'{cls.num_stages} stages (valid: '
                    f'{-cls.num_stages}..{cls.num_stages - 1})')
            parsed.append(index % cls.num_stages)
        if len(set(parsed)) != len(parsed):
            raise ValueError(
                f'out_indices {tuple(out_indices)} name a stage twice')
        return tuple(sorted(parsed))

    # ------------------------------------------------------------------
    # forward
    def forward(self, x: torch.Tensor) -> tuple:
        """Return the requested stage outputs as a tuple of NCHW tensors."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'InceptionNeXt expects NCHW input with {self.in_channels} '
                f'channels, got shape {tuple(x.shape)}')
        min_size = self.stem_stride * 2**(self.num_built_stages - 1)
        if x.shape[2] < min_size or x.shape[3] < min_size:
            raise ValueError(
                f'input {tuple(x.shape[2:])} is smaller than the network '
                f'stride {min_size} at stage {self.num_built_stages - 1}; '
                f'pad or resize images to at least {min_size}x{min_size}')
        # The conv weights are channels-last, so PyTorch runs the stem conv,
        # and from there the whole network, in channels-last memory (see
        # __init__). Outputs come back in the input's memory format.
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                out = x
                if self.out_norm_cfg is not None:
                    out = getattr(self, f'norm{i}')(out)
                outs.append(out if channels_last else out.contiguous())
        return tuple(outs)

    # ------------------------------------------------------------------
    # training modes
    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        modules = [self.stem]
        for i in range(self.frozen_stages):
            modules.append(self.stages[i])
            if self.out_norm_cfg is not None and i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        for module in modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------
    # initialization and checkpoints
    def init_weights(self):
        """Truncated-normal init, or load an official checkpoint.

        With ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)``
        the file is read with ``weights_only=True`` and matched against this
        network's official key layout; see :meth:`load_official_state_dict`.
        """
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            checkpoint = CheckpointLoader.load_checkpoint(
                init_cfg['checkpoint'], map_location='cpu')
            print_log(f'load InceptionNeXt weights from '
                      f'{init_cfg["checkpoint"]}', logger='current')
            self.load_official_state_dict(checkpoint,
                                          prefix=init_cfg.get('prefix'))
            self._is_init = True
            return
        if init_cfg is None:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    trunc_normal_(m.weight, std=.02)
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
            self._is_init = True
            return
        super().init_weights()

    @staticmethod
    def extract_state_dict(checkpoint: dict,
                           prefix: Optional[str] = None) -> dict:
        """Unwrap a checkpoint into a backbone state dict in official layout.

        Accepts a plain state dict, ``{'state_dict': ...}`` / ``{'model':
        ...}`` wrappers and ``module.`` / ``backbone.`` prefixes (or the given
        ``prefix``).
        """
        if not isinstance(checkpoint, dict):
            raise ValueError(
                f'checkpoint holds a {type(checkpoint).__name__}, not a '
                'state dict')
        for key in ('state_dict', 'model', 'module'):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                checkpoint = checkpoint[key]
                break
        state_dict = {k: v for k, v in checkpoint.items()
                      if isinstance(v, torch.Tensor)}
        state_dict = {(k[7:] if k.startswith('module.') else k): v
                      for k, v in state_dict.items()}
        if prefix is None and any(k.startswith('backbone.')
                                  for k in state_dict):
            prefix = 'backbone.'
        if prefix:
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()
                          if k.startswith(prefix)}
        return state_dict

    def load_official_state_dict(self, checkpoint: dict,
                                 prefix: Optional[str] = None):
        """Load an official/timm InceptionNeXt checkpoint (or a wrapped one).

        The classifier head and the stages this model does not build are
        skipped; the output norms ``norm{i}`` (not part of classification
        checkpoints) keep their init. Everything else must match: a missing,
        extra or differently shaped network weight raises ``ValueError``
        naming the keys, so a checkpoint of another architecture or size
        never loads partially. Skipped and missing keys are logged.
        """
        state_dict = self.extract_state_dict(checkpoint, prefix)
        own = self.state_dict()
        skipped = sorted(k for k in state_dict if k.startswith('head.') or (
            re.match(r'stages\.(\d+)\.', k) and
            int(k.split('.')[1]) >= self.num_built_stages))
        for k in skipped:
            state_dict.pop(k)
        expected = {k for k in own if not re.match(r'norm\d\.', k)}
        if not expected & set(state_dict):
            raise ValueError(
                'the checkpoint is not an InceptionNeXt checkpoint: none of '
                f'its {len(state_dict)} keys (e.g. '
                f'{sorted(state_dict)[:3]}) is an InceptionNeXt weight '
                '(expected stem.*, stages.N.blocks.M.*)')
        missing = sorted(expected - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        mismatched = sorted(
            f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
            f'{tuple(own[k].shape)}' for k in set(state_dict) & set(own)
            if state_dict[k].shape != own[k].shape)
        if missing or unexpected or mismatched:
            guess = self.guess_arch(state_dict)
            raise ValueError(
                'checkpoint does not fit InceptionNeXt(arch='
                f"{self.arch['depths']}/{self.arch['dims']})"
                + (f'; it looks like {guess!r}' if guess else '') + ':'
                + (f'\n  missing ({len(missing)}): {missing[:5]}'
                   if missing else '')
                + (f'\n  unexpected ({len(unexpected)}): {unexpected[:5]}'
                   if unexpected else '')
                + (f'\n  shape mismatch ({len(mismatched)}): '
                   f'{mismatched[:5]}' if mismatched else ''))
        self.load_state_dict(state_dict, strict=False)
        not_loaded = sorted(set(own) - set(state_dict))
        print_log(
            f'loaded {len(state_dict)} InceptionNeXt tensors; skipped '
            f'({len(skipped)}): {skipped}; not in checkpoint, kept init '
            f'({len(not_loaded)}): {not_loaded}', logger='current')

    @classmethod
    def guess_arch(cls, state_dict: dict) -> Optional[str]:
        """Name the standard variant a state dict belongs to, if any."""
        if 'stem.0.weight' not in state_dict:
            return None
        dim0 = state_dict['stem.0.weight'].shape[0]
        depth2 = len({k.split('.')[3] for k in state_dict
                      if k.startswith('stages.2.blocks.')})
        for name, arch in cls.arch_settings.items():
            if arch['dims'][0] == dim0 and arch['depths'][2] == depth2:
                return name
        return None

    # ------------------------------------------------------------------
    # deploy
    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold every BatchNorm into its neighbouring convolution for
        inference: the stem norm into the stem conv, each downsample norm into
        the downsample conv, each block norm into ``fc1``, and each layer
        scale ``gamma`` into ``fc2`` (then ``fc2`` also adds the residual in
        ``MetaNeXtBlock._forward_inference``).

        The name and behaviour follow mmpretrain's re-parameterisable
        backbones. One-way and idempotent: the norms use their running
        statistics and are removed, so call it on a trained model, for
        inference only; outputs equal the eval-mode outputs up to float
        rounding. The output norms ``norm{i}`` (if any) stay.
        """
        if self.deploy:
            return
        _fold_bn_into_prev_conv(self.stem, conv_idx=0, bn_idx=1)
        for stage in self.stages:
            if isinstance(stage.downsample, nn.Sequential):
                _fold_bn_into_next_conv(stage.downsample, bn_idx=0, conv_idx=1)
            for block in stage.blocks:
                block.switch_to_deploy()
        self.to(memory_format=torch.channels_last)  # the new, fused convs
        self.deploy = True


def _onednn_fusion_applies(*tensors: torch.Tensor) -> bool:
    """Whether the fused oneDNN linear ops (``torch.ops.mkldnn``, also used
    by inductor on CPU) can replace plain ops: contiguous fp32/bf16 CPU
    tensors, no autograd, not under ``torch.compile`` / tracing (where the
    compiler does its own fusion)."""
    return (not torch.compiler.is_compiling()  # first: no graph break
            and not torch.jit.is_tracing()
            and not torch.is_grad_enabled()
            and hasattr(torch.ops.mkldnn, '_linear_pointwise')
            and torch.backends.mkldnn.is_available()
            and all(t.device.type == 'cpu' and t.is_contiguous()
                    and t.dtype in (torch.float32, torch.bfloat16)
                    and t.dtype == tensors[0].dtype for t in tensors))


def _cpu_kernels_apply(x: torch.Tensor) -> bool:
    """Whether mmincnext's compiled kernels can take the block input ``x``:
    they are built and supported by the CPU, no autograd, not under
    ``torch.compile`` / tracing, and ``x`` is a float32 CPU tensor in dense
    channels-last memory."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False  # first: no graph break
    if x.dim() != 4:
        return False
    n, c, h, w = x.shape
    return (not torch.is_grad_enabled()
            and ops.cpu_kernels_available()
            and x.device.type == 'cpu' and x.dtype == torch.float32
            and x.stride() == (h * w * c, 1, w * c, c))


def _fused_mlp_fits(w1: torch.Tensor) -> bool:
    """Whether :func:`mmincnext.ops.fused_mlp` takes this MLP (``fc1``'s
    weight ``[H, C]``), and is the faster choice: channel counts that are
    multiples of 16, weights of at most ``FUSED_MLP_MAX_WEIGHT_BYTES``."""
    hidden, channels = w1.shape
    return (w1.dtype == torch.float32
            and channels % 16 == 0 and hidden % 16 == 0
            and 2 * w1.numel() * w1.element_size()
            <= FUSED_MLP_MAX_WEIGHT_BYTES)


def _fused_mlp_applies(x: torch.Tensor, shortcut: torch.Tensor,
                       w1: torch.Tensor, w2: torch.Tensor) -> bool:
    """Whether :func:`mmincnext.ops.fused_mlp` can run this MLP on the
    ``(N, H, W, C)`` views ``x`` and ``shortcut``: the tensors qualify for
    oneDNN's fused ops in float32, the kernel is built and supported by the
    CPU, and the weights fit (:func:`_fused_mlp_fits`)."""
    return (_onednn_fusion_applies(x, shortcut, w1, w2)  # first: compiling
            and ops.cpu_kernels_available()
            and x.dtype == torch.float32
            and _fused_mlp_fits(w1))


def _bn_scale_shift(bn: _BatchNorm):
    """Per-channel (scale, shift) of a BN in eval mode."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) \
        if bn.affine else 1. / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias.detach() if bn.affine else 0.) - bn.running_mean * scale
    return scale, shift


def _fold_bn_before(bn: _BatchNorm, conv: nn.Conv2d) -> nn.Conv2d:
    """A conv equal to ``conv(bn(x))``; ``conv`` must not pad."""
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f'can only fold BatchNorm, got {type(bn).__name__}')
    if conv.groups != 1 or any(p != 0 for p in conv.padding):
        raise ValueError('can only fold BN into an unpadded dense conv')
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                      stride=conv.stride, bias=True).to(conv.weight)
    w = conv.weight.detach()
    fused.weight.data.copy_(w * scale.view(1, -1, 1, 1))
    bias = conv.bias.detach() if conv.bias is not None else 0.
    fused.bias.data.copy_(bias + (w * shift.view(1, -1, 1, 1)).sum((1, 2, 3)))
    return fused


def _fold_bn_into_next_conv(seq: nn.Sequential, bn_idx: int, conv_idx: int):
    seq[conv_idx] = _fold_bn_before(seq[bn_idx], seq[conv_idx])
    seq[bn_idx] = nn.Identity()


def _fold_bn_into_prev_conv(seq: nn.Sequential, conv_idx: int, bn_idx: int):
    conv, bn = seq[conv_idx], seq[bn_idx]
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f'can only fold BatchNorm, got {type(bn).__name__}')
    scale, shift = _bn_scale_shift(bn)
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    bias = conv.bias.data if conv.bias is not None else 0.
    conv.bias = nn.Parameter(bias * scale + shift)
    seq[bn_idx] = nn.Identity()
