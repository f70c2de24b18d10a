"""Distributed (gloo) training and testing on machines without a GPU.

MMEngine 0.10.7's ``pytorch`` launcher calls ``torch.cuda.set_device`` in
``init_dist`` and the Runner wraps the model in DDP with
``device_ids=[LOCAL_RANK]``; both fail without CUDA. The Runner skips
``init_dist`` when a process group exists and accepts ``model_wrapper_cfg``,
so :func:`setup_cpu_distributed` (called by ``tools/train.py`` and
``tools/test.py`` before the Runner is built) initialises a gloo group and
selects :class:`CPUDistributedDataParallel`, a DDP wrapper that passes no
device ids. On a machine with CUDA nothing changes (nccl, MMEngine's own
wrapper).
"""
import datetime
import os

import torch
import torch.distributed as torch_dist
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS

__all__ = ['CPUDistributedDataParallel', 'setup_cpu_distributed']


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`~mmengine.model.MMDistributedDataParallel` for CPU processes.

    ``device_ids`` (which the Runner fills with ``[LOCAL_RANK]``) is
    dropped, as DDP requires for CPU modules. ``torch.nn.SyncBatchNorm``
    runs only on accelerators, so SyncBN layers are reverted to BN first
    (per-process statistics, as in non-distributed runs).
    """

    def __init__(self, module, device_ids=None, **kwargs):
        module = revert_sync_batchnorm(module)
        super().__init__(module=module, device_ids=None, **kwargs)


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Prepare a CPU-only distributed run; return whether it did.

    With ``launcher='pytorch'`` (``torchrun``) and no CUDA device, creates the
    gloo process group from the ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` /
    ``MASTER_PORT`` environment (honouring ``cfg.env_cfg.dist_cfg.timeout``)
    and sets ``cfg.model_wrapper_cfg`` to :class:`CPUDistributedDataParallel`
    (keeping its other keys). Does nothing when CUDA is available or the
    launcher is ``'none'``. Other launchers on CPU raise ``RuntimeError``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {launcher} without a GPU is not supported; use '
            'tools/dist_train.sh / dist_test.sh (torchrun, gloo on CPU)')
    if not torch_dist.is_initialized():
        dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {}) or {}
        kwargs = {}
        if dist_cfg.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(
                seconds=dist_cfg['timeout'])
        torch_dist.init_process_group(
            backend='gloo', rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']), **kwargs)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper_type = wrapper.get('type', 'MMDistributedDataParallel')
    if wrapper_type not in ('MMDistributedDataParallel',
                            'CPUDistributedDataParallel'):
        raise RuntimeError(
            f'model_wrapper_cfg type {wrapper_type!r} cannot run on CPU; '
            'remove it or use CPUDistributedDataParallel')
    wrapper['type'] = 'CPUDistributedDataParallel'
    # what the Runner passes to its default wrapper
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    print_log(
        f'no CUDA device: gloo process group (rank '
        f'{torch_dist.get_rank()}/{torch_dist.get_world_size()}), '
        'CPUDistributedDataParallel, SyncBN -> BN', logger='current')
    return True
