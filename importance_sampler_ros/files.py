"""Writing files so that a crash or a full disk never leaves a partial one behind."""
from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, data: bytes, sync: bool = True) -> None:
    """Write `path` through a temporary file renamed over it: readers see the old content or
    the new, never a part. On an error the temporary file is removed and the error raised."""
    tmp = path.with_name(f'.{path.name}.tmp')
    try:
        with tmp.open('wb') as file:
            file.write(data)
            file.flush()
            if sync:
                os.fsync(file.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
