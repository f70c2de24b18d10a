"""The backbone is found from MMDetection's and MMSegmentation's registries."""
import os
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..', '..'))


def run_python(code, timeout=300):
    """Run ``code`` in a fresh interpreter (nothing imported yet)."""
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize('registry', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('type_name', ['InceptionNeXt',
                                       'mmincnext.InceptionNeXt'])
def test_build_from_downstream_registry(registry, type_name):
    import mmincnext  # noqa: F401
    if registry == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    from mmincnext.models import InceptionNeXt
    model = MODELS.build(dict(type=type_name, arch='atto', out_indices=(3, )))
    assert isinstance(model, InceptionNeXt)
    assert model.out_channels == [320]


def test_config_with_custom_imports_only(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent('''
        custom_imports = dict(imports=['mmincnext'],
                              allow_failed_imports=False)
        model = dict(type='InceptionNeXt', arch='atto', out_indices=(1, 2))
    '''))
    out = run_python(f'''
        import sys
        from mmengine.config import Config
        from mmdet.registry import MODELS as DET
        from mmseg.registry import MODELS as SEG
        assert 'mmincnext' not in sys.modules
        cfg = Config.fromfile({str(cfg)!r})
        for registry in (DET, SEG):
            model = registry.build(cfg.model)
            print(type(model).__module__, model.out_channels)
    ''')
    assert out.count('mmincnext.models.backbones.inception_next [80, 160]') \
        == 2


def test_scoped_name_imports_the_package_itself():
    out = run_python('''
        import sys
        from mmdet.registry import MODELS
        assert 'mmincnext' not in sys.modules
        model = MODELS.build(dict(type='mmincnext.InceptionNeXt', arch='a'))
        print(type(model).__name__, 'mmincnext' in sys.modules)
    ''')
    assert 'InceptionNeXt True' in out


@pytest.mark.parametrize('present,absent', [('mmdet', 'mmseg'),
                                            ('mmseg', 'mmdet')])
def test_import_with_only_one_downstream_package(present, absent):
    """``import mmincnext`` works when only mmdet or only mmseg exists."""
    out = run_python(f'''
        import sys
        sys.modules[{absent!r}] = None  # makes `import {absent}` fail
        import mmincnext
        from {present}.registry import MODELS
        model = MODELS.build(dict(type='InceptionNeXt', arch='atto'))
        print('built', model.out_channels,
              any(m.startswith({absent!r} + '.') for m in sys.modules))
    ''')
    assert 'built [40, 80, 160, 320] False' in out
