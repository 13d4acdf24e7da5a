"""Run BLAS single-threaded: the experiment's matrices are tiny (a few thousand x 32).

With OpenBLAS's default of one thread per core, each small matrix product pays a thread hand-off;
when the cores are busy (another process, or our own second worker) that hand-off was measured to
make a product up to 50x slower than doing it on one thread. Parallelism comes from worker
processes instead. Environment variables would have to be set before NumPy is imported, which
`python -m qlora_np` cannot guarantee, so the limit is set at run time with threadpoolctl.
"""

from threadpoolctl import threadpool_limits


def limit_blas_threads(n=1):
    """Limit every loaded BLAS library to `n` threads for the rest of the process."""
    threadpool_limits(n, user_api="blas")
