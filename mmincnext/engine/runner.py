"""Runner building for ``tools/train.py`` and ``tools/test.py``: loading a
detection or segmentation config and building its Runner with mmincnext's
checks."""
import importlib
import os.path as osp
from typing import Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

from .cpu_distributed import setup_cpu_distributed
from .hooks import add_reliability_hooks, check_data_cfg
from .memory import ENV_VAR, keep_freed_memory

SCOPES = ('mmdet', 'mmseg')


def task_scope(cfg) -> str:
    """'mmdet' or 'mmseg', read from the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(
            f'config default_scope is {scope!r}; the tools handle {SCOPES} '
            'configs (inherit from an mmdet:: or mmseg:: base)')
    return scope


def load_task_config(config: str,
                     cfg_options: Optional[dict] = None,
                     launcher: str = 'none',
                     work_dir: Optional[str] = None) -> Tuple[Config, str]:
    """Load ``config``, merge ``--cfg-options`` and set ``work_dir`` (CLI >
    config > ``./work_dirs/<config name>``); return ``(cfg, scope)``."""
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    scope = task_scope(cfg)
    if scope == 'mmdet':
        # fewer repeated torch.compile recompilations, as mmdet's tools do
        from mmdet.utils import setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg, scope


def build_task_runner(cfg, scope: str, data_splits: Sequence[str]):
    """Check the data of ``data_splits``, add the reliability hooks, prepare
    CPU (gloo) distribution when needed, keep freed memory for reuse
    (:func:`~mmincnext.engine.memory.keep_freed_memory`) and build the
    (task's) Runner."""
    if keep_freed_memory():
        print_log(f'malloc: freed memory is kept for reuse ({ENV_VAR}=0 '
                  'turns this off)', logger='current')
    # clear errors for empty datasets / mismatched channels; exact resume
    add_reliability_hooks(cfg)
    check_data_cfg(cfg, splits=tuple(data_splits))
    setup_cpu_distributed(cfg, cfg.get('launcher', 'none'))
    if 'runner_type' in cfg:
        return importlib.import_module(f'{scope}.registry').RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def close_process_group(runner=None):
    """End a distributed run as PyTorch asks programs to: wait for every
    rank (``barrier``), release ``runner``'s model (the DDP wrapper, whose
    reducer holds the process group), then destroy the default process
    group. Left to interpreter shutdown, the backend's and the reducer's
    worker threads are torn down in no defined order, which can abort a
    process (SIGABRT, "terminate called without an active exception")
    after the run itself succeeded.

    Args:
        runner (Runner, optional): The finished runner; its ``model`` is
            dropped before the process group is destroyed.
    """
    import gc

    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    if runner is not None:
        runner.model = None  # the DDP wrapper and its reducer
    gc.collect()
    dist.destroy_process_group()
