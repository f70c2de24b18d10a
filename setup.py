import os.path as osp

from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'mmincnext', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def read_requirements(name):
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        return [line.split('#')[0].strip() for line in f
                if line.split('#')[0].strip()]


setup(
    name='mmincnext',
    version=read_version(),
    description='InceptionNeXt backbone for MMDetection 3 and MMSegmentation 1',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmincnext', 'mmincnext.*']),
    python_requires='>=3.8',
    # mmcv (full, with compiled ops) is required but not declared: pip would
    # build it in an isolated environment without torch and silently skip the
    # ops. tools/setup_env.sh builds it; see README.
    install_requires=read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    license='Apache-2.0',
    zip_safe=False,
)
