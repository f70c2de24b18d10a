"""tools/model_converters/inceptionnext2mm.py: timm/official -> OpenMMLab."""
import argparse
import importlib.util
import os.path as osp
import sys

import pytest
import torch

from mmincnext.models.backbones import InceptionNeXt
from mmincnext.utils import safe_torch_load

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONVERTER = osp.join(ROOT, 'tools', 'model_converters', 'inceptionnext2mm.py')


def run_converter(src, dst, capsys=None):
    """Run the converter's command line in this process; return
    ``(exit code, output)``."""
    spec = importlib.util.spec_from_file_location('inceptionnext2mm',
                                                  CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = sys.argv
    sys.argv = [CONVERTER, str(src), str(dst)]
    try:
        module.main()
        return 0, ''
    except Exception as e:  # what the script would die of
        return 1, f'{type(e).__name__}: {e}'
    finally:
        sys.argv = argv


@pytest.fixture(scope='module')
def timm_atto(tmp_path_factory):
    """A timm ``inception_next_atto`` with non-trivial weights, saved as
    timm / the official release do (plain state dict, with head)."""
    import timm
    torch.manual_seed(0)
    model = timm.create_model('inception_next_atto', pretrained=False,
                              ls_init_value=0.5).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp('ckpt') / 'inceptionnext_atto.pth'
    torch.save(model.state_dict(), path)
    return model, path


def test_convert_and_load_with_backbone_prefix(timm_atto, tmp_path, capsys):
    timm_model, src = timm_atto
    dst = tmp_path / 'mm' / 'inceptionnext-atto_mm.pth'
    code, err = run_converter(src, dst)
    assert code == 0, err
    assert 'InceptionNeXt-atto' in capsys.readouterr().out

    converted = safe_torch_load(str(dst))
    keys = set(converted['state_dict'])
    assert keys and all(k.startswith('backbone.') for k in keys)
    assert not any(k.startswith('backbone.head.') for k in keys)
    assert converted['meta']['arch'] == 'atto'

    backbone = InceptionNeXt(
        'atto', out_indices=(3, ),
        init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                      prefix='backbone.'))
    backbone.init_weights()
    original = {k: v for k, v in timm_model.state_dict().items()
                if not k.startswith('head.')}
    loaded = backbone.state_dict()
    assert set(loaded) == set(original)
    for k, v in original.items():
        assert torch.equal(loaded[k], v), k
    # and the network computes what timm computes
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ours = backbone.eval()(x)[0]
        ref = timm_model.forward_features(x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_converted_file_loads_as_detector_load_from(timm_atto, tmp_path):
    """The converted file is a valid ``load_from`` for a model whose
    backbone is InceptionNeXt (mmengine's load_checkpoint, non-strict)."""
    from mmengine.runner import load_checkpoint
    _, src = timm_atto
    dst = tmp_path / 'atto_mm.pth'
    assert run_converter(src, dst)[0] == 0

    class Wrapper(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = InceptionNeXt('atto')

    model = Wrapper()
    load_checkpoint(model, str(dst), strict=True)
    ref = safe_torch_load(str(dst))['state_dict']
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_converter_refuses_other_and_unsafe_files(tmp_path):
    other = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7)}, other)
    code, err = run_converter(other, tmp_path / 'out.pth')
    assert code != 0 and 'not an InceptionNeXt checkpoint' in err
    assert not (tmp_path / 'out.pth').exists()

    # an InceptionNeXt of no released size, and a damaged one
    odd = InceptionNeXt('atto').state_dict()
    odd['stages.2.blocks.8.gamma'] = torch.ones(160)
    torch.save(odd, tmp_path / 'odd.pth')
    code, err = run_converter(tmp_path / 'odd.pth', tmp_path / 'out.pth')
    assert code != 0 and 'unknown size' in err and '[2, 2, 7, 2]' in err
    bad = InceptionNeXt('atto').state_dict()
    bad['stages.3.blocks.0.mlp.fc2.weight'] = torch.zeros(320, 10, 1, 1)
    torch.save(bad, tmp_path / 'bad.pth')
    code, err = run_converter(tmp_path / 'bad.pth', tmp_path / 'out.pth')
    assert code != 0 and 'shape mismatch' in err, err

    # pickled objects (here an argparse.Namespace, as in old training
    # checkpoints) are never unpickled
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': InceptionNeXt('atto').state_dict(),
                'args': argparse.Namespace(lr=0.1)}, unsafe)
    code, err = run_converter(unsafe, tmp_path / 'out.pth')
    assert code != 0 and 'refusing to load' in err, err
    assert not (tmp_path / 'out.pth').exists()
