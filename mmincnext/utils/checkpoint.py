"""Checkpoint files are read with ``torch.load(weights_only=True)`` only.

``weights_only`` refuses any pickle that would import or call code other than
tensors, containers and an explicit allow-list of plain data types. The
allow-list below holds exactly the types MMEngine itself writes into a training
checkpoint (the message hub's ``HistoryBuffer`` and the numpy scalars and
arrays it logs), so our own checkpoints resume and test on torch >= 2.6 while
crafted files are still refused. Importing :mod:`mmincnext` routes MMEngine's
local-file and http(s) checkpoint loaders through :func:`safe_torch_load`, so
``load_from``, ``--resume``, ``init_cfg=dict(type='Pretrained')`` and the test
tools all load safely, on every torch version.
"""
import os
import pickle

import numpy as np
import torch
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['UnsafeCheckpointError', 'safe_torch_load', 'mmengine_safe_globals']


class UnsafeCheckpointError(RuntimeError):
    """Raised for a checkpoint that would need arbitrary unpickling."""


def mmengine_safe_globals():
    """The plain-data classes MMEngine stores in its training checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = getattr(np, '_core', None)
    multiarray = multiarray.multiarray if multiarray is not None else \
        np.core.multiarray
    types = [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct,
             multiarray.scalar]
    # numpy >= 1.25 pickles dtypes as instances of these classes
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [getattr(dtypes, name) for name in dir(dtypes)
                  if name.endswith('DType')]
    return types


def _register_safe_globals():
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch >= 2.4
        add(mmengine_safe_globals())


def _history_buffer_state(self) -> dict:
    """``HistoryBuffer.__getstate__`` without ``statistics_methods``.

    MMEngine pickles the buffer's statistics *functions* (as
    ``getattr(HistoryBuffer, 'mean')``) into every training checkpoint, and
    allowing ``getattr`` would let a crafted file reach any attribute, i.e.
    run code. The functions are code, not state: ``__setstate__`` already
    restores the defaults when they are absent, and custom ones are
    registered by the code that defines them.
    """
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def _store_history_buffers_as_data():
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_state


def safe_torch_load(filename, map_location='cpu'):
    """``torch.load`` with ``weights_only=True`` and clear errors.

    Args:
        filename (str | os.PathLike | file-like): The checkpoint.
        map_location: Same as :func:`torch.load`.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        UnsafeCheckpointError: the file holds pickled objects that are not
            plain data (it could execute code); it is refused.
        ValueError: the file is truncated or not a torch checkpoint.
    """
    if isinstance(filename, (str, os.PathLike)) and not os.path.isfile(
            filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        if 'Weights only load failed' in message or \
                'Unsupported' in message:
            culprit = message[message.find('Unsupported'):].splitlines()[0] \
                if 'Unsupported' in message else message.splitlines()[0]
            hint = ''
            if 'getattr' in culprit:
                hint = (' (MMEngine checkpoints written without mmincnext '
                        'imported store HistoryBuffer functions this way; '
                        'checkpoints written by tools/train.py do not)')
            raise UnsafeCheckpointError(
                f'refusing to load {filename}: it contains pickled objects '
                'that are not plain tensors/containers and could execute '
                f'code when unpickled: {culprit}{hint}. Only load it with '
                'weights_only=False if you trust its source, and re-save its '
                'state dict.') from None
        raise ValueError(
            f'checkpoint {filename} is truncated, corrupt or not a torch '
            f'file: {e}') from None
    except Exception as e:  # the unpickler fails in many ways on garbage
        raise ValueError(
            f'checkpoint {filename} is truncated, corrupt or not a torch '
            f'file: {type(e).__name__}: {e}') from None


def _load_from_local(filename, map_location):
    return safe_torch_load(os.path.expanduser(filename), map_location)


def _load_from_http(filename, map_location=None, model_dir=None,
                    progress=True):
    # torch.hub's loader calls torch.load with weights_only=True only from
    # torch 2.6 on; download first, then load safely ourselves.
    from torch.hub import download_url_to_file, get_dir
    model_dir = model_dir or os.path.join(get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = os.path.join(model_dir, os.path.basename(filename.split('?')[0]))
    if not os.path.exists(cached):
        download_url_to_file(filename, cached, progress=progress)
    return safe_torch_load(cached, map_location)


def install_safe_loaders():
    """Route MMEngine's local and http(s) checkpoint loaders through
    :func:`safe_torch_load`; idempotent."""
    _register_safe_globals()
    _store_history_buffers_as_data()
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local,
                                     force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                     loader=_load_from_http, force=True)

