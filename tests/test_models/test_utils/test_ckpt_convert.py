"""Loading official-layout checkpoints: wrappings, prefixes, wrong files,
unsafe pickles."""
import os
import pickle

import pytest
import torch

from mmincnext.models import InceptionNeXt
from mmincnext.utils import UnsafeCheckpointError, safe_torch_load


@pytest.fixture(scope='module')
def official_atto(timm_reference):
    ref, state_dict = timm_reference('atto')
    return ref, state_dict


def _outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def assert_close_rel(out, ref, rtol=1e-5):
    err = (out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)
    assert err <= rtol, f'relative error {err:.3g} > {rtol}'


def _pretrained(path, **kwargs):
    model = InceptionNeXt(
        'atto', init_cfg=dict(type='Pretrained', checkpoint=str(path)),
        **kwargs)
    model.init_weights()
    return model


@pytest.mark.parametrize('wrap', [
    'plain', 'state_dict', 'model', 'module_prefix', 'backbone_prefix',
    'state_dict_backbone_module'
])
def test_pretrained_loads_every_wrapping(wrap, official_atto, tmp_path):
    ref, sd = official_atto
    if wrap == 'plain':
        ckpt = sd
    elif wrap == 'state_dict':
        ckpt = {'state_dict': sd, 'meta': {'epoch': 3}}
    elif wrap == 'model':
        ckpt = {'model': sd, 'epoch': 300}
    elif wrap == 'module_prefix':
        ckpt = {f'module.{k}': v for k, v in sd.items()}
    elif wrap == 'backbone_prefix':  # a detector checkpoint: other parts too
        ckpt = {f'backbone.{k}': v for k, v in sd.items()}
        ckpt['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 40, 1, 1)
    else:
        ckpt = {'state_dict': {f'module.backbone.{k}': v
                               for k, v in sd.items()}}
    path = tmp_path / 'ckpt.pth'
    torch.save(ckpt, path)
    model = _pretrained(path)
    x = torch.randn(1, 3, 64, 96)
    expected = ref.forward_intermediates(x, intermediates_only=True)
    for out, exp in zip(_outputs(model, x), expected):
        assert_close_rel(out, exp)


def test_head_dropped_and_logged(official_atto, tmp_path):
    import logging

    from mmengine.logging import MMLogger
    _, sd = official_atto
    assert any(k.startswith('head.') for k in sd)
    path = tmp_path / 'official.pth'
    torch.save(sd, path)
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model = _pretrained(path, out_norm_cfg=dict(type='BN'))
    finally:
        logger.removeHandler(handler)
    assert model.is_init
    text = '\n'.join(records)
    assert 'head.fc1.weight' in text  # named as skipped
    assert 'norm0.weight' in text  # output norms: not in the checkpoint


def test_partial_build_skips_later_stages(official_atto, tmp_path):
    ref, sd = official_atto
    path = tmp_path / 'official.pth'
    torch.save(sd, path)
    model = _pretrained(path, out_indices=(0, 1))
    x = torch.randn(1, 3, 64, 64)
    expected = ref.forward_intermediates(x, intermediates_only=True)[:2]
    for out, exp in zip(_outputs(model, x), expected):
        assert_close_rel(out, exp)


def test_other_variant_is_refused(timm_reference, tmp_path):
    _, tiny_sd = timm_reference('tiny')
    path = tmp_path / 'tiny.pth'
    torch.save(tiny_sd, path)
    with pytest.raises(ValueError, match=r"looks like 'tiny'") as err:
        _pretrained(path)
    assert 'shape mismatch' in str(err.value)


def test_other_architecture_is_refused(tmp_path):
    resnet_like = {
        'conv1.weight': torch.zeros(64, 3, 7, 7),
        'bn1.weight': torch.ones(64),
        'layer1.0.conv1.weight': torch.zeros(64, 64, 1, 1),
        'fc.weight': torch.zeros(1000, 2048),
    }
    path = tmp_path / 'resnet.pth'
    torch.save(resnet_like, path)
    with pytest.raises(ValueError, match='not an InceptionNeXt checkpoint'):
        _pretrained(path)


def test_missing_blocks_are_refused(official_atto, tmp_path):
    _, sd = official_atto
    cut = {k: v for k, v in sd.items() if not k.startswith('stages.2.blocks.5')}
    path = tmp_path / 'cut.pth'
    torch.save(cut, path)
    with pytest.raises(ValueError, match=r'missing \(\d+\).*stages\.2\.blocks\.5'):
        _pretrained(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        _pretrained(tmp_path / 'nope.pth')


def test_truncated_file(official_atto, tmp_path):
    _, sd = official_atto
    path = tmp_path / 'full.pth'
    torch.save(sd, path)
    data = path.read_bytes()
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match='truncated, corrupt'):
        _pretrained(bad)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'this is not a checkpoint' * 10)
    with pytest.raises(ValueError, match='corrupt'):
        _pretrained(garbage)


class _Exploit:
    """Unpickling this would create a marker file (arbitrary code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'stem.0.weight': torch.zeros(1), 'x': _Exploit(str(marker))},
               path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match='could execute code'):
        safe_torch_load(path)
    with pytest.raises(UnsafeCheckpointError):
        _pretrained(path)
    # also through mmengine's loader used by load_from / --resume / tools
    from mmengine.runner.checkpoint import CheckpointLoader
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_plain_pickle_is_refused(tmp_path):
    marker = tmp_path / 'pwned2'
    path = tmp_path / 'legacy.pkl'
    with open(path, 'wb') as f:
        pickle.dump(_Exploit(str(marker)), f)
    with pytest.raises((UnsafeCheckpointError, ValueError)):
        safe_torch_load(path)
    assert not marker.exists()


def test_mmengine_training_checkpoint_types_are_allowed(tmp_path):
    """What mmengine writes into its checkpoints loads under weights_only."""
    import numpy as np
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('mmincnext_ckpt_types')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_info('iter', np.int64(3))
    ckpt = {
        'meta': {'message_hub': hub.state_dict(), 'seed': np.int64(1),
                 'arr': np.arange(3, dtype=np.float32)},
        'state_dict': {'w': torch.ones(2)},
    }
    path = tmp_path / 'iter_3.pth'
    torch.save(ckpt, path)
    loaded = safe_torch_load(path)
    buf = loaded['meta']['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.current() == 0.5
    assert np.array_equal(loaded['meta']['arr'], np.arange(3))
    assert os.path.getsize(path) > 0
