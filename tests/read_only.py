"""A directory that one command cannot write in, for root too."""

import contextlib
import errno
import os
import subprocess

import pytest

__all__ = ["read_only"]

_BIND_READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'


@contextlib.contextmanager
def read_only(directory):
    """Yield ``(prefix, reason)``: a command run after ``prefix`` cannot write in
    ``directory``, and ``reason`` is the error text it gets.

    Root ignores permissions, so for root ``prefix`` mounts ``directory`` read-only in a
    private mount namespace (the test is skipped where root cannot); other users lose the
    write permission while the context lasts.
    """
    if os.geteuid() != 0:
        mode = os.stat(directory).st_mode
        os.chmod(directory, 0o555)
        try:
            yield [], os.strerror(errno.EACCES)
        finally:
            os.chmod(directory, mode)
        return
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _BIND_READ_ONLY,
              str(directory)]
    try:
        usable = subprocess.run([*prefix, "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        usable = False
    if not usable:
        pytest.skip("cannot mount a read-only directory here")
    yield prefix, os.strerror(errno.EROFS)
