"""mmincnext.engine.memory: after keep_freed_memory() a freed large block
is reused without page faults; MMINCNEXT_KEEP_FREED_MEMORY=0 leaves glibc's
behaviour (a fresh mapping, faulted in again) and other values are
refused. Each case runs in its own interpreter: the setting is
process-wide."""
import os
import subprocess
import sys

import pytest

from mmincnext.engine import keep_freed_memory
from mmincnext.engine.memory import ENV_VAR, _glibc

SCRIPT = '''
import resource
import torch
from mmincnext.engine import keep_freed_memory

def faults(rounds):
    """Minor page faults of ``rounds`` x allocating, filling and freeing
    64 MiB."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        torch.empty(16 * 2**20).fill_(1)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

applied = keep_freed_memory()
faults(8)  # the heap grows to its steady state
print(applied, faults(4))
'''


def run(setting):
    """(applied, page faults of 4 steady-state rounds) in a fresh
    interpreter with ``$MMINCNEXT_KEEP_FREED_MEMORY`` = ``setting``."""
    env = dict(os.environ)
    env.pop(ENV_VAR, None)
    if setting is not None:
        env[ENV_VAR] = setting
    proc = subprocess.run([sys.executable, '-c', SCRIPT], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    applied, faults = proc.stdout.split()
    return applied == 'True', int(faults)


def test_freed_blocks_are_reused_without_page_faults():
    """By default every 64 MiB block (above glibc's largest mmap
    threshold) is a fresh mapping, faulted in again on every round (4 x
    16384 faults with 4 KiB pages); kept, it is reused."""
    applied, kept = run(None)
    off, default = run('0')
    assert applied == (_glibc() is not None) and not off
    assert default >= 4 * 16, default  # faults every round, huge pages too
    if applied:
        assert kept <= default // 10, (default, kept)
    else:
        assert kept > default // 2, (default, kept)


def test_env_var_other_values_are_refused(monkeypatch):
    monkeypatch.setenv(ENV_VAR, 'yes')
    with pytest.raises(ValueError,
                       match="MMINCNEXT_KEEP_FREED_MEMORY='yes': must be 0 "
                       'or 1'):
        keep_freed_memory()
