"""A small tmpfs of the test's own, to fill a disk and grow it again (needs root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Tmpfs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, size: str) -> None:
        """Change the size (``"512k"``, ``"64m"``); the files stay."""
        _mount(["-o", f"remount,size={size}", str(self.path)])


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Tmpfs]:
    """Mount a tmpfs of ``size`` at ``path`` (created) for the block; unmounted after."""
    if os.geteuid() != 0:
        raise AssertionError(
            "this test mounts a tmpfs to fill a disk and needs root; run the suite as root"
        )
    path.mkdir(parents=True, exist_ok=True)
    _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    try:
        yield Tmpfs(path)
    finally:
        # Lazy: a process of the test that still holds a file there must not keep it mounted.
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _mount(args: list[str]) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"mount {' '.join(args)} failed: {result.stderr.strip()}")
