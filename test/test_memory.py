"""``release_freed_memory`` hands back what a worker thread freed (glibc keeps it in the thread's
arena otherwise: the node's RSS crept ~1 GiB/h in the soak benchmark)."""
import sys
import threading

import pytest

from sparp_ros.memory import release_freed_memory


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_memory_freed_in_a_worker_thread_goes_back_to_the_os():
    kept = []

    def work():                          # as a reconstruction in an executor thread
        blocks = [bytearray(4000) for _ in range(60_000)]    # ~230 MiB in the thread's arena
        kept.append(bytearray(4000))     # a live block after them pins the arena's top
        del blocks

    t = threading.Thread(target=work)
    t.start()
    t.join()
    before = _rss_mib()
    assert release_freed_memory()
    after = _rss_mib()
    assert after < before - 100, (before, after)
