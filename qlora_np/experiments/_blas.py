"""Run BLAS single-threaded: the experiment's matrices are tiny (a few thousand x 32).

With OpenBLAS's default of one thread per core, each small matrix product pays a thread hand-off;
when the cores are busy (another process, or our own second worker) that hand-off can make a
product 50x slower than doing it on one thread. Parallelism comes from worker processes instead.
Environment variables would have to be set before NumPy is imported, which `python -m qlora_np`
cannot guarantee, so the limit is set at run time: with threadpoolctl when it is installed, else
through OpenBLAS's own `*_set_num_threads` entry point. Anything else is left as it is.
"""

import ctypes
import os


def limit_blas_threads(n=1):
    """Best effort; returns True when a limit was applied."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n, user_api="blas")
        return True
    except ImportError:
        pass
    import numpy  # noqa: F401  (make sure NumPy's BLAS is loaded)
    maps = "/proc/self/maps"
    if not os.path.exists(maps):
        return False
    with open(maps) as f:
        libs = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    done = False
    for path in sorted(libs):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(int(n))
                done = True
                break
    return done
