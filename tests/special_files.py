"""Real special files for tests: named pipes, sockets, and a regular file whose open() hangs.

A hung parallel filesystem leaves ``open()`` waiting in the kernel. The same happens, for real,
on a local disk when another process holds a write *lease* on the file (``fcntl F_SETLEASE``):
every other open waits until the holder lets go, or for ``/proc/sys/fs/lease-break-time``
(45 s by default). :func:`hung_open` holds such a lease in a child process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

_HOLDER = r"""
import fcntl, os, signal, sys, time
signal.signal(signal.SIGIO, signal.SIG_IGN)  # the kernel's "give it back" signal: ignored
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
print("held", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def hung_open(path: str | os.PathLike[str]) -> Iterator[subprocess.Popen]:
    """While in the block, any ``open()`` of the regular file ``path`` by another process hangs."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, os.fspath(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held", "could not take a lease on the file"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def make_socket(path: str | os.PathLike[str]) -> socket.socket:
    """A Unix socket file at ``path`` (close the returned socket when done)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(os.fspath(path))
    return sock


def make_fifo(path: str | os.PathLike[str]) -> Path:
    """A named pipe at ``path`` nobody writes to: opening it for reading waits forever."""
    os.mkfifo(path)
    return Path(path)
