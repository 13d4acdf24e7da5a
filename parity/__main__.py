"""`python -m parity`: run every parity check, print one table, exit 1 on any failure.

Columns: `out` = forward outputs (y; for training rows the loss curve), `worst grad` = the
gradient (training: final parameter) with the largest share of its tolerance used, `tol used` =
max |err| / (atol + rtol |ref|) over both (a row passes iff <= 1), `routing` = rows whose chosen
atom set equals the reference's. Tolerances: SPEC §9.7 (see parity/metrics.py).
"""

import argparse
import platform
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m parity",
        description="NumPy vs PyTorch parity of Queryable LoRA (not quantized LoRA): outputs, "
                    "gradients, golden files, checkpoints, training; one table.")
    parser.add_argument("--fuzz", type=int, default=200, help="random configs (default 200)")
    parser.add_argument("--fuzz-seed", type=int, default=0, help="fuzzer seed (default 0)")
    parser.add_argument("--fast-gradcheck", action="store_true",
                        help="gradcheck in fast mode (random directions) instead of the full "
                             "Jacobian")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    import torch

    from .report import exit_code, run_all, table_lines
    rows, seconds = run_all(fuzz=args.fuzz, fuzz_seed=args.fuzz_seed,
                            fast_gradcheck=args.fast_gradcheck)
    print("\n".join(table_lines(rows)))
    failed = [r for r in rows if r.status == "FAIL"]
    skipped = [r for r in rows if r.status == "skip"]
    wall = time.perf_counter() - start
    print(f"\n{len(rows)} rows: {len(rows) - len(failed) - len(skipped)} pass, {len(failed)} fail, "
          f"{len(skipped)} skipped. torch {torch.__version__}, Python {platform.python_version()}, "
          f"{torch.get_num_threads()} torch threads (1 while checking).")
    print("section seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"wall time {wall:.1f} s")
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
