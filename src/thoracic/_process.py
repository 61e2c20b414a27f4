"""Settings of a whole process that thoracic's own commands apply (the library never does on import).

:func:`keep_freed_memory`: glibc's ``malloc`` hands a large block (from 128 KiB up, or a little
more after its first frees) straight back to the operating system when it is freed, and takes it
anew, page by page, the next time. One radiograph passes through several arrays of tens of MB
(the file's pixel data, the stored values, the windowed image), so each image paid the kernel's
page faults for all of them again: about a fifth of a warm prediction on the 2-core benchmark
machine (bench/backends.py's P1). With the setting, such blocks come from the heap and stay there
for the next image; memory is given back when more than 512 MB lie free at its top. The peak
stays what the work needs (bench/memory.py); between images the process keeps what it freed.
"""

from __future__ import annotations

import os
import sys

__all__ = ["MALLOC_SETTINGS", "keep_freed_memory"]

#: glibc's variables and ``mallopt`` parameters: (environment variable, parameter, value).
MALLOC_SETTINGS: tuple[tuple[str, int, int], ...] = (
    ("MALLOC_MMAP_THRESHOLD_", -3, 256 << 20),  # M_MMAP_THRESHOLD: blocks below 256 MB from the heap
    ("MALLOC_TRIM_THRESHOLD_", -1, 512 << 20),  # M_TRIM_THRESHOLD: give memory back past 512 MB free
    ("MALLOC_TOP_PAD_", -2, 64 << 20),  # M_TOP_PAD: grow the heap 64 MB at a time
)

#: ``off`` (or 0, no, false) leaves the process's allocator as it was.
ENV = "THORACIC_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Keep freed large blocks in this process for reuse (glibc on Linux); whether it was applied.

    Not applied when ``THORACIC_KEEP_FREED_MEMORY=off``, when any of glibc's own ``MALLOC_*_``
    variables of :data:`MALLOC_SETTINGS` is set (the user's choice stands), or where there is no
    glibc ``mallopt`` (another C library, another system). Once applied, the same variables are
    set in ``os.environ``, so processes started from this one (the batch reader processes) start
    with the same settings.
    """
    if os.environ.get(ENV, "").strip().lower() in ("off", "0", "no", "false"):
        return False
    if any(name in os.environ for name, _, _ in MALLOC_SETTINGS):
        return False
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # here, not at import: `import thoracic` stays quick

    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's name on Linux (musl's libc is another file)
        mallopt = libc.mallopt
        gnu = libc.gnu_get_libc_version  # glibc only: musl has no such function
    except (OSError, AttributeError):
        return False
    del gnu
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not all(mallopt(param, value) == 1 for _, param, value in MALLOC_SETTINGS):
        return False
    os.environ.update({name: str(value) for name, _, value in MALLOC_SETTINGS})
    return True
