"""``thoracic._process.keep_freed_memory``: freed image-sized blocks are reused, not faulted in again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from thoracic._process import ENV, MALLOC_SETTINGS

# One image's worth of large arrays with overlapping lives (12 MB of stored values, then three 24 MB
# float arrays, each made from the last), five times: the minor page faults per round tell whether
# freed memory came back from the operating system page by page.
PROBE = """
import json, os, resource
import numpy as np
from thoracic._process import keep_freed_memory
applied = keep_freed_memory()
def image():
    a = np.ones(6 << 20, np.uint16)
    b = a.astype(np.float32)
    del a
    c = b * np.float32(2)
    del b
    d = c + np.float32(1)
    del c, d
for _ in range(2):
    image()  # warm numpy and the allocator
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    image()
print(json.dumps({"applied": applied, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5,
                  "env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}}))
"""

def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != ENV}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env},
                         check=True, timeout=60)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_image_arrays_are_reused_instead_of_faulted_in_again():
    plain = _probe(**{ENV: "off"})
    assert not plain["applied"] and plain["env"]["MALLOC_TRIM_THRESHOLD_"] is None
    assert plain["faults"] > 500  # glibc's defaults: each image takes part of its pages anew (1,531 here)
    kept = _probe()
    assert kept["applied"]
    assert kept["faults"] < 0.05 * plain["faults"]  # the freed blocks are used again (0 here)
    # processes started from this one get the same settings through the environment
    assert kept["env"] == {name: str(value) for name, _, value in MALLOC_SETTINGS if name in kept["env"]}


def test_the_users_own_allocator_settings_stand():
    mine = _probe(MALLOC_TRIM_THRESHOLD_="1000")
    assert not mine["applied"] and mine["env"]["MALLOC_TRIM_THRESHOLD_"] == "1000"
    assert mine["env"]["MALLOC_MMAP_THRESHOLD_"] is None
