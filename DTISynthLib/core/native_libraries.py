"""One lock for loading native libraries on a background thread and for walking the loaded ones.

threadpoolctl finds the loaded BLAS libraries with glibc's dl_iterate_phdr, which holds the dynamic
loader's lock while it calls back into Python (needing the GIL); a thread importing torch, or any
extension module, holds the GIL while its dlopen waits for that loader lock. The two deadlock: seen
as a hang when a tensor fit (single-threaded BLAS through threadpoolctl) started while
generators.runner.TorchGenerators loaded its models in the background. Both sides hold LOADING.
"""

import threading

LOADING = threading.RLock()
