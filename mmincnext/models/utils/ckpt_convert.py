"""Official (sail-sg/inceptionnext) and timm InceptionNeXt checkpoints.

The backbone keeps the official parameter names, so loading needs no key
mapping: only unwrapping (``state_dict`` / ``model`` containers, ``module.``
and ``backbone.`` prefixes), dropping what the backbone does not build (the
classifier head, stages after the last output) and a strict check that the
rest is exactly this network's. Used by ``InceptionNeXt.init_weights`` and by
``tools/model_converters/inceptionnext2mm.py``.
"""
import re
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log


def extract_state_dict(checkpoint: dict,
                       prefix: Optional[str] = None) -> dict:
    """Unwrap a checkpoint into a backbone state dict in official layout.

    Accepts a plain state dict, ``{'state_dict': ...}`` / ``{'model': ...}``
    wrappers and ``module.`` / ``backbone.`` prefixes (or the given
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
    if prefix is None and any(k.startswith('backbone.') for k in state_dict):
        prefix = 'backbone.'
    if prefix:
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()
                      if k.startswith(prefix)}
    return state_dict


def stage_depths(state_dict: dict, num_stages: int = 4) -> List[int]:
    """Number of blocks per stage in an official-layout state dict."""
    return [len({k.split('.')[3] for k in state_dict
                 if k.startswith(f'stages.{i}.blocks.')})
            for i in range(num_stages)]


def guess_arch(state_dict: dict,
               arch_settings: Dict[str, dict]) -> Optional[str]:
    """Name the entry of ``arch_settings`` (e.g.
    ``InceptionNeXt.arch_settings``) a state dict belongs to, if any: the
    stem width and the depth of stage 2 tell the standard sizes apart."""
    if 'stem.0.weight' not in state_dict:
        return None
    dim0 = state_dict['stem.0.weight'].shape[0]
    depth2 = stage_depths(state_dict)[2]
    for name, arch in arch_settings.items():
        if arch['dims'][0] == dim0 and arch['depths'][2] == depth2:
            return name
    return None


def load_official_state_dict(model: nn.Module, checkpoint: dict,
                             prefix: Optional[str] = None):
    """Load an official/timm InceptionNeXt checkpoint (or a wrapped one)
    into ``model`` (an ``InceptionNeXt``).

    The classifier head and the stages the model does not build are skipped;
    the output norms ``norm{i}`` (not part of classification checkpoints)
    keep their init. Everything else must match: a missing, extra or
    differently shaped network weight raises ``ValueError`` naming the keys,
    so a checkpoint of another architecture or size never loads partially.
    Skipped and missing keys are logged.
    """
    state_dict = extract_state_dict(checkpoint, prefix)
    own = model.state_dict()
    skipped = sorted(k for k in state_dict if k.startswith('head.') or (
        re.match(r'stages\.(\d+)\.', k) and
        int(k.split('.')[1]) >= model.num_built_stages))
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
        guess = guess_arch(state_dict, model.arch_settings)
        raise ValueError(
            'checkpoint does not fit InceptionNeXt(arch='
            f"{model.arch['depths']}/{model.arch['dims']})"
            + (f'; it looks like {guess!r}' if guess else '') + ':'
            + (f'\n  missing ({len(missing)}): {missing[:5]}'
               if missing else '')
            + (f'\n  unexpected ({len(unexpected)}): {unexpected[:5]}'
               if unexpected else '')
            + (f'\n  shape mismatch ({len(mismatched)}): '
               f'{mismatched[:5]}' if mismatched else ''))
    model.load_state_dict(state_dict, strict=False)
    not_loaded = sorted(set(own) - set(state_dict))
    print_log(
        f'loaded {len(state_dict)} InceptionNeXt tensors; skipped '
        f'({len(skipped)}): {skipped}; not in checkpoint, kept init '
        f'({len(not_loaded)}): {not_loaded}', logger='current')
