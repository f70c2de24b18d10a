import glob
import os
import os.path as osp
import platform
import warnings

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


def extensions():
    """``mmincnext._ext`` and ``mmincnext._ext_avx2``: the CPU kernels (fused
    MLP, token mixer, whole block, and their training passes; x86-64), built
    twice from the same sources, for AVX-512 and for AVX2 (with
    ``MMINCNEXT_AVX2``); ``mmincnext.ops`` loads the one the CPU runs.

    Optional: skipped when torch is not importable (an isolated build), on
    other architectures or with ``MMINCNEXT_WITH_OPS=0``; a failed compile
    warns and installs the pure-Python package (see mmincnext/ops).
    """
    if os.getenv('MMINCNEXT_WITH_OPS', '1') == '0' \
            or platform.machine().lower() not in ('x86_64', 'amd64'):
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        return [], {}

    class OptionalBuildExtension(BuildExtension):

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as e:  # compiler missing or failing
                warnings.warn(f'{ext.name} was not built ({e}); '
                              "PyTorch's kernels will be used instead")

    # Every .cpp of the folder (the kernels and pybind.cpp, the module); the
    # headers there are dependencies, so that editing one alone rebuilds.
    csrc = 'mmincnext/ops/csrc'
    exts = [
        CppExtension(
            name, sorted(glob.glob(f'{csrc}/*.cpp')),
            depends=sorted(glob.glob(f'{csrc}/*.h')),
            define_macros=macros,
            extra_compile_args=['-O3', '-fopenmp'],
            extra_link_args=['-fopenmp'])
        for name, macros in (('mmincnext._ext', []),
                             ('mmincnext._ext_avx2', [('MMINCNEXT_AVX2',
                                                       None)]))
    ]
    return exts, {'build_ext': OptionalBuildExtension}


ext_modules, cmdclass = extensions()

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
    extras_require={'tests': read_requirements('tests.txt'),
                    'deploy': read_requirements('deploy.txt')},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    license='Apache-2.0',
    zip_safe=False,
)
