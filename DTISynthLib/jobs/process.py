"""Settings of a one-job process, which only the command line may make (they are process-wide)."""


def keep_freed_heap_memory():
    """Make glibc's malloc serve blocks up to 256 MB from the heap and keep freed memory instead of
    returning it. Otherwise each inference batch's activations are fresh mmap pages, faulted in anew:
    about 20 % of CPU inference time with paper-size models. Returns whether it took effect (False
    outside glibc)."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 256 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
