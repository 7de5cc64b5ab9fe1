"""One lock for loading native libraries on a background thread and for walking the loaded ones, and
process-wide settings of native libraries held by overlapping blocks (SharedSetting).

threadpoolctl finds the loaded BLAS libraries with glibc's dl_iterate_phdr, which holds the dynamic
loader's lock while it calls back into Python (needing the GIL); a thread importing torch, or any
extension module, holds the GIL while its dlopen waits for that loader lock. The two deadlock: seen
as a hang when a tensor fit (single-threaded BLAS through threadpoolctl) started while
generators.runner.TorchGenerators loaded its models in the background. Both sides hold LOADING.
"""

import threading
from contextlib import contextmanager

LOADING = threading.RLock()


class SharedSetting:
    """A process-wide setting (BLAS's or ITK's thread count) that blocks in several threads may hold at
    once: the first block in applies it (apply() returns the function that undoes it), the last out
    undoes it. Each block restoring what it found would leave the setting applied for good when blocks
    leave in the order they came (a simulated subject's two acquisitions, register_rigid's two descents)."""

    def __init__(self, apply, lock=None):
        self.apply, self.lock = apply, lock or threading.Lock()
        self.holders, self.undo = 0, None

    @contextmanager
    def held(self):
        with self.lock:
            if self.holders == 0:
                self.undo = self.apply()
            self.holders += 1
        try:
            yield
        finally:
            with self.lock:
                self.holders -= 1
                if self.holders == 0:
                    self.undo()
