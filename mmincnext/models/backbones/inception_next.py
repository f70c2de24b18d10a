"""InceptionNeXt backbone for dense prediction (detection, segmentation).

`InceptionNeXt: When Inception Meets ConvNeXt <https://arxiv.org/abs/2303.16900>`_
(CVPR 2024). Official code and weights: https://github.com/sail-sg/inceptionnext.

The modules and parameter names follow the official implementation (and timm's
``inception_next.py``), so the released ImageNet checkpoints load without any
key conversion. Read top to bottom in data-flow order: token mixer, MLP,
block, stage, network.
"""
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
from ..utils import (fold_bn_before, fold_bn_into_next_conv,
                     fold_bn_into_prev_conv, load_official_state_dict)


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

    The 1x1 convs keep their official ``Conv2d`` parameters. With autograd
    on the CPU, the block runs this MLP on mmincnext's fused training
    kernels where they apply (:func:`mmincnext.ops.mlp_training`); otherwise
    the convs run as whichever is faster on the machine
    (:func:`mmincnext.ops.gemm_library`): matrix products (``F.linear``) on
    the free ``(N, H, W, C)`` view of the channels-last activations (the
    BLAS), or the 1x1 convs themselves (oneDNN, :meth:`forward_nchw`); on
    GPU, the matrix products (cuBLAS).
    """

    def __init__(self, in_channels: int, hidden_channels: int):
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden_channels, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_channels, in_channels, 1)

    def forward(self, x: torch.Tensor,
                scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, H, W, C) -> (N, H, W, C), times the per-channel ``scale``
        (the layer scale) if given."""
        x = self.act(F.linear(x, self.fc1.weight.flatten(1), self.fc1.bias))
        rows = x.numel() // x.shape[-1]
        if scale is not None and self.scales_outputs(rows):
            return F.linear(x, self.fc2.weight.flatten(1),
                            self.fc2.bias) * scale
        weight, bias = self.fc2_params(scale)
        return F.linear(x, weight.flatten(1), bias)

    def forward_nchw(self, x: torch.Tensor,
                     scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W) as 1x1 convs (oneDNN on the CPU),
        times ``scale`` if given."""
        x = self.act(self.fc1(x))
        rows = x.numel() // x.shape[1]
        if scale is not None and self.scales_outputs(rows):
            return self.fc2(x) * scale.view(-1, 1, 1)
        return F.conv2d(x, *self.fc2_params(scale))

    def scales_outputs(self, rows: int) -> bool:
        """Whether the layer scale costs less on ``fc2``'s outputs
        (``rows x C`` products, and a reduction over the rows in backward)
        than folded into its weight (``C x hidden``, :meth:`fc2_params`):
        where there are fewer rows (pixels) than hidden channels, as at the
        last stage of a small input."""
        return rows < self.fc2.in_channels

    def fc2_params(self, scale: Optional[torch.Tensor] = None) -> tuple:
        """``fc2``'s weight ``[C, H, 1, 1]`` and bias, times ``scale`` per
        output channel. The layer scale folded into ``fc2`` costs two
        weight-sized products and their backward, instead of a product
        over the activations and, in backward, a reduction over every
        pixel."""
        weight, bias = self.fc2.weight, self.fc2.bias
        if scale is not None:
            weight, bias = weight * scale.view(-1, 1, 1, 1), bias * scale
        return weight, bias


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
        cpu_kernels (bool): Run the block on the CPU with mmincnext's
            compiled kernels where they apply (see :class:`InceptionNeXt`).
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
            return ops.metanext_inference(self, x)  # kernels, oneDNN
        return self.forward_mlp(self.forward_mixer(x), x)

    def forward_mixer(self, x: torch.Tensor) -> torch.Tensor:
        """``norm(token_mixer(x))`` with autograd (the block's first half)."""
        if ops.mixer_training_applies(self, x):  # kernels, fwd and bwd
            x = ops.mixer_training(self.token_mixer, x)
        else:
            x = self.token_mixer(x)
        return self.norm(x)  # Identity after deploy

    def forward_mlp(self, x: torch.Tensor,
                    shortcut: torch.Tensor) -> torch.Tensor:
        """``shortcut + drop_path(gamma * mlp(x))`` with autograd, ``x``
        being :meth:`forward_mixer`'s output (the block's second half)."""
        if ops.mlp_training_applies(self, x):  # fused kernels, fwd and bwd
            return ops.mlp_training(self, x, shortcut)
        if ops.onednn_mlp_applies(x):  # training on a CPU where it is faster
            x = self.mlp.forward_nchw(x, self.gamma)
        else:
            x = self.mlp(x.permute(0, 2, 3, 1), self.gamma).permute(0, 3, 1, 2)
        return shortcut + self.drop_path(x)

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold ``norm`` (a BatchNorm in eval mode) into ``fc1`` and ``gamma``
        into ``fc2``; one-way, for inference."""
        if self.deploy:
            return
        self.mlp.fc1 = fold_bn_before(self.norm, self.mlp.fc1)
        self.norm = nn.Identity()
        if self.gamma is not None:
            fc2 = self.mlp.fc2
            fc2.weight.mul_(self.gamma.view(-1, 1, 1, 1))
            fc2.bias.mul_(self.gamma)
            self.gamma = None
        self.deploy = True


class Downsample(nn.Sequential):
    """Norm, then a 2x2 stride-2 conv (the official ``downsample.0`` and
    ``downsample.1``). With autograd on the CPU the conv runs as a GEMM
    over its 2x2 patches where that is the faster path on the machine
    (:func:`mmincnext.ops.downsample_training_applies`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm, conv = self
        x = norm(x)  # Identity after deploy
        if ops.downsample_training_applies(conv, x):
            return ops.downsample_training(conv, x)
        return conv(x)


class MetaNeXtStage(nn.Module):
    """An optional :class:`Downsample` and the blocks.

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
            self.downsample = Downsample(
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
        cpu_kernels (bool): On the CPU (float32, eager), run the blocks
            with mmincnext's compiled kernels where they are built and
            apply: in inference (eval mode, no autograd) as chosen by
            :func:`mmincnext.ops.metanext_inference`, with autograd the MLP
            where :func:`mmincnext.ops.mlp_training_applies`. Outputs and
            gradients match PyTorch's modules within float32 rounding.
            Defaults to True.
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
            if key != 'mlp_ratios' and any(int(v) != v for v in value):
                raise ValueError(
                    f'arch[{key!r}] must be ints, got {tuple(value)}')
            settings[key] = tuple(value)
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

    def load_official_state_dict(self, checkpoint: dict,
                                 prefix: Optional[str] = None):
        """Load an official/timm checkpoint (or a wrapped one) strictly; see
        :func:`mmincnext.models.utils.load_official_state_dict`."""
        load_official_state_dict(self, checkpoint, prefix)

    # ------------------------------------------------------------------
    # deploy
    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold every BatchNorm into its neighbouring convolution for
        inference: the stem norm into the stem conv, each downsample norm into
        the downsample conv, each block norm into ``fc1``, and each layer
        scale ``gamma`` into ``fc2`` (then ``fc2`` also adds the residual in
        :func:`mmincnext.ops.metanext_inference`).

        The name and behaviour follow mmpretrain's re-parameterisable
        backbones. One-way and idempotent: the norms use their running
        statistics and are removed, so call it on a trained model, for
        inference only; outputs equal the eval-mode outputs up to float
        rounding. The output norms ``norm{i}`` (if any) stay.
        """
        if self.deploy:
            return
        fold_bn_into_prev_conv(self.stem, conv_idx=0, bn_idx=1)
        for stage in self.stages:
            if isinstance(stage.downsample, nn.Sequential):
                fold_bn_into_next_conv(stage.downsample, bn_idx=0, conv_idx=1)
            for block in stage.blocks:
                block.switch_to_deploy()
        self.to(memory_format=torch.channels_last)  # the new, fused convs
        self.deploy = True

