"""Layer-wise / stage-wise learning-rate decay for InceptionNeXt backbones.

MMDetection's and MMSegmentation's ``LearningRateDecayOptimizerConstructor``
only know ConvNeXt (they dispatch on the backbone's class name and parse
ConvNeXt's parameter names). This constructor does the same job for any model
with an :class:`~mmincnext.models.InceptionNeXt` ``backbone`` attribute, i.e.
every MMDetection detector and MMSegmentation segmentor built on it, also
inside DDP and test-time wrappers (``SlicedInferenceDetector``): the groups
and layer ids are those of the wrapped model.

Layer ids follow the ConvNeXt recipe (ids grow towards the head; the lr of
id ``i`` is ``base_lr * decay_rate ** (num_layers + 1 - i)``):

=================================  ===============  ===================
parameter                          ``layer_wise``   ``stage_wise``
=================================  ===============  ===================
``backbone.stem``                  0                0
``backbone.stages.0``              1                1
``backbone.stages.1``              2                2
``backbone.stages.2.blocks.j``     ``3 + j // 3``   3
``backbone.stages.2.downsample``   3                3
``backbone.stages.3``              ``num_layers``   4
everything else (out norms
``backbone.norm{i}``, neck, heads)  ``num_layers + 1``  ``num_layers + 1``
=================================  ===============  ===================

This is exactly mmdet's mapping for ConvNeXt (its ``downsample_layers.0`` is
our ``stem``, its ``downsample_layers.i`` our ``stages.i.downsample``), so the
published ConvNeXt settings carry over: ``num_layers=6`` for tiny (9 blocks in
stage 2) and ``num_layers=12`` for small/base (27 blocks). ``num_layers`` may
be omitted: it then defaults to the backbone's natural value
(``4 + (depths[2] - 1) // 3`` layer-wise, ``4`` stage-wise).

The output norms ``norm{i}`` are new layers (not in ImageNet checkpoints), so
they are trained at the full lr like the neck and heads, as mmdet does for
ConvNeXt's output norms.

Weight decay is 0 for every 1-D parameter (BN/GN/LN weights and biases, the
layer scales ``gamma``) and every ``.bias``; other weights use the optimizer's
``weight_decay``.
"""
import json
import re
from typing import List, Optional

import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.logging import MMLogger
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor

from mmincnext.models.backbones import InceptionNeXt
from mmincnext.registry import OPTIM_WRAPPER_CONSTRUCTORS, register_everywhere

__all__ = ['InceptionNeXtLearningRateDecayOptimizerConstructor',
           'get_layer_id_for_inceptionnext', 'get_stage_id_for_inceptionnext']

DECAY_TYPES = ('layer_wise', 'stage_wise')


def get_layer_id_for_inceptionnext(name: str, num_layers: int) -> int:
    """Layer id of parameter ``name`` (of the whole model) for layer-wise
    decay; see the module docstring for the table."""
    if not name.startswith('backbone.'):
        return num_layers + 1
    name = name[len('backbone.'):]
    if name.startswith('stem.'):
        return 0
    m = re.match(r'stages\.(\d+)\.(downsample|blocks)\.?(\d+)?', name)
    if m is None:  # output norms norm{i}
        return num_layers + 1
    stage, part = int(m.group(1)), m.group(2)
    if stage == 0:
        return 1
    if stage == 1:
        return 2
    if stage == 2:
        return 3 if part == 'downsample' else 3 + int(m.group(3)) // 3
    return num_layers


def get_stage_id_for_inceptionnext(name: str, num_layers: int) -> int:
    """Stage id of parameter ``name`` for stage-wise decay: stem 0, stage
    ``i`` (with its downsample) ``i + 1``, the rest ``num_layers + 1``."""
    if not name.startswith('backbone.'):
        return num_layers + 1
    name = name[len('backbone.'):]
    if name.startswith('stem.'):
        return 0
    m = re.match(r'stages\.(\d+)\.', name)
    if m is None:
        return num_layers + 1
    return int(m.group(1)) + 1


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP-like model wrappers and test-time wrappers
    (``BaseTTAModel``, e.g. ``SlicedInferenceDetector``).

    ``DefaultOptimWrapperConstructor.__call__`` removes one ``.module``
    level; a DDP-wrapped ``SlicedInferenceDetector`` has two. The parameter
    names (and so the layer ids) are then those of the detector.
    """
    while not hasattr(model, 'backbone') and (
            is_model_wrapper(model) or isinstance(model, BaseTTAModel)):
        model = model.module
    return model


def default_num_layers(backbone: InceptionNeXt, decay_type: str) -> int:
    """The smallest ``num_layers`` that gives every backbone layer its own
    id (6 for tiny, 12 for small/base, 5 for atto; 4 stage-wise)."""
    if decay_type == 'stage_wise':
        return backbone.num_stages
    return 4 + (backbone.arch['depths'][2] - 1) // 3


@register_everywhere(OPTIM_WRAPPER_CONSTRUCTORS)
class InceptionNeXtLearningRateDecayOptimizerConstructor(
        DefaultOptimWrapperConstructor):
    """Optimizer constructor with layer-/stage-wise lr decay for models whose
    ``backbone`` is :class:`~mmincnext.models.InceptionNeXt`.

    ``paramwise_cfg`` keys:

    - ``decay_rate`` (float, required): lr ratio between consecutive ids.
    - ``decay_type`` (str): ``'layer_wise'`` (default) or ``'stage_wise'``.
    - ``num_layers`` (int, optional): id of the last backbone stage; the
      neck/heads get ``num_layers + 1`` and the full lr. Defaults to the
      backbone's natural value (see :func:`default_num_layers`).

    Example (mmdet or mmseg config)::

        optim_wrapper = dict(
            type='OptimWrapper',
            constructor='InceptionNeXtLearningRateDecayOptimizerConstructor',
            paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise',
                               num_layers=6),
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        cfg = self.paramwise_cfg
        if 'decay_rate' not in cfg:
            raise ValueError(
                'InceptionNeXtLearningRateDecayOptimizerConstructor needs '
                "paramwise_cfg=dict(decay_rate=..., decay_type='layer_wise'"
                f"|'stage_wise', num_layers=...); got {cfg}")
        unknown = set(cfg) - {'decay_rate', 'decay_type', 'num_layers'}
        if unknown:
            raise ValueError(
                f'unsupported paramwise_cfg key(s) {sorted(unknown)} for '
                'InceptionNeXtLearningRateDecayOptimizerConstructor (allowed: '
                'decay_rate, decay_type, num_layers)')
        self.decay_rate = float(cfg['decay_rate'])
        if not 0 < self.decay_rate <= 1:
            raise ValueError(
                f'decay_rate must be in (0, 1], got {self.decay_rate}')
        self.decay_type = cfg.get('decay_type', 'layer_wise')
        if self.decay_type not in DECAY_TYPES:
            raise ValueError(f'decay_type must be one of {DECAY_TYPES}, got '
                             f'{self.decay_type!r}')
        self.num_layers = cfg.get('num_layers')

    def _check_num_layers(self, backbone: InceptionNeXt) -> int:
        minimum = default_num_layers(backbone, self.decay_type)
        if self.num_layers is None:
            return minimum
        if not isinstance(self.num_layers, int) or self.num_layers < minimum:
            raise ValueError(
                f'num_layers={self.num_layers} is too small for '
                f"{self.decay_type} decay of InceptionNeXt with depths "
                f"{backbone.arch['depths']}: backbone layers would share the "
                f'id of the head; use num_layers >= {minimum}')
        return self.num_layers

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        """Append one param group per (layer id, decay / no decay)."""
        module = unwrap_model(module)
        backbone = getattr(module, 'backbone', None)
        if not isinstance(backbone, InceptionNeXt):
            raise TypeError(
                'InceptionNeXtLearningRateDecayOptimizerConstructor needs a '
                'model whose `backbone` is mmincnext InceptionNeXt; got '
                f'{type(module).__name__} with backbone '
                f'{type(backbone).__name__}. For ConvNeXt use mmdet/mmseg '
                "'LearningRateDecayOptimizerConstructor'.")
        num_layers = self._check_num_layers(backbone)
        get_id = (get_layer_id_for_inceptionnext
                  if self.decay_type == 'layer_wise' else
                  get_stage_id_for_inceptionnext)
        logger = MMLogger.get_current_instance()
        groups = {}
        names = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen
            if param.ndim == 1 or name.endswith('.bias'):
                decay, weight_decay = 'no_decay', 0.
            else:
                decay, weight_decay = 'decay', self.base_wd or 0.
            layer_id = get_id(name, num_layers)
            group_name = f'layer_{layer_id}_{decay}'
            if group_name not in groups:
                scale = self.decay_rate**(num_layers + 1 - layer_id)
                groups[group_name] = dict(
                    params=[], lr=scale * self.base_lr, lr_scale=scale,
                    weight_decay=weight_decay, group_name=group_name)
                names[group_name] = []
            groups[group_name]['params'].append(param)
            names[group_name].append(name)
        rank, _ = get_dist_info()
        if rank == 0:
            summary = {
                k: dict(lr=g['lr'], lr_scale=g['lr_scale'],
                        weight_decay=g['weight_decay'],
                        num_params=len(g['params']),
                        param_names=names[k])
                for k, g in sorted(groups.items(),
                                   key=lambda kv: int(kv[0].split('_')[1]))
            }
            logger.info(
                f'{self.decay_type} lr decay (rate {self.decay_rate}, '
                f'num_layers {num_layers}) param groups = '
                f'{json.dumps(summary, indent=2)}')
        params.extend(groups.values())
