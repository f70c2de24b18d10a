"""Registries of mmincnext.

Every class is registered twice: in mmincnext's own child registries (so
``type='mmincnext.InceptionNeXt'`` resolves, and auto-imports this package)
and in MMEngine's root registries (so a plain ``type='InceptionNeXt'`` is found
from MMDetection's and MMSegmentation's registries, which are both children of
the root). Nothing here imports mmdet or mmseg.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmincnext',
                  locations=['mmincnext.models'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmincnext', locations=['mmincnext.engine'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmincnext',
                   locations=['mmincnext.evaluation'])

HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmincnext',
                 locations=['mmincnext.engine'])

DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mmincnext',
                    locations=['mmincnext.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS,
                      scope='mmincnext',
                      locations=['mmincnext.datasets.transforms'])


def register_everywhere(registry):
    """Decorator: register a class in ``registry`` and in its root parent."""

    def _register(cls):
        registry.register_module(module=cls)
        registry.parent.register_module(module=cls)
        return cls

    return _register
