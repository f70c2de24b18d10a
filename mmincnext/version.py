__version__ = '0.1.0'


def _parse(version):
    return tuple(int(x) if x.isdigit() else x for x in version.split('.'))


version_info = _parse(__version__)
