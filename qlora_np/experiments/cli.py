"""`python -m qlora_np regress`: run the regression suite, write results, tables and figures.

    python -m qlora_np regress                       # default suite, 5 seeds, <= 90 s on 2 cores
    python -m qlora_np regress --preset paper        # the full suite, 10 seeds
    python -m qlora_np regress --task my.py:make     # every method on your own task
    options: --out DIR (default results/)  --seeds N  --steps N  --jobs N  --no-figures

Rerunning the same command skips the runs already in DIR/results.json and rebuilds the same
tables. "QLoRA" here is Queryable LoRA (arXiv 2605.08423), not quantized LoRA.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from ._blas import limit_blas_threads


def _positive_int(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected a positive integer, "
                                             f"got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name}: expected a positive integer, got {value}")
        return value
    return parse


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m qlora_np regress",
        description="Regression experiments: Queryable LoRA (arXiv 2605.08423; not quantized "
                    "LoRA) against LoRA at the same rank and at a matched parameter count.")
    p.add_argument("--preset", choices=("default", "paper"), default="default",
                   help="default: quick suite (5 seeds); paper: all settings, ablations, "
                        "regime sweep, 10 seeds")
    p.add_argument("--task", metavar="FILE.py:FUNC",
                   help="run every method on your own task: FUNC(seed) returns a dict of arrays "
                        "(see docs/experiments.md)")
    p.add_argument("--out", default="results", metavar="DIR",
                   help="output directory (default: results/)")
    p.add_argument("--seeds", type=_positive_int("--seeds"), metavar="N",
                   help="number of seeds (0..N-1); overrides the preset")
    p.add_argument("--steps", type=_positive_int("--steps"), metavar="N",
                   help="fine-tuning steps per run; overrides the preset")
    p.add_argument("--jobs", type=_positive_int("--jobs"), default=min(2, os.cpu_count() or 1),
                   metavar="N", help="worker processes (default: min(2, CPUs))")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    return p


def make_suite(args):
    from . import presets
    from .runner import replace
    suite = presets.PRESETS[args.preset]()
    if args.seeds is not None:
        suite = replace(suite, seeds=tuple(range(args.seeds)))
    if args.steps is not None:
        suite = replace(suite, steps=args.steps)
    if args.task:
        from .loader import call_task, load_task
        fn, describe = load_task(args.task)
        data = call_task(fn, 0, where=f"--task {args.task}")   # fail early, before any run
        suite = presets.user_suite(fn, describe, "instructions_train" in data,
                                   replace(suite, base_per_seed=True))
    return suite


def main(argv=None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    limit_blas_threads(1)
    from .figures import write_figures
    from .loader import TaskError
    from .report import results_markdown, suite_tables
    from .runner import run_suite, suite_records
    from .store import atomic_write_bytes

    start = time.perf_counter()
    try:
        suite = make_suite(args)
    except TaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    raw = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m qlora_np regress", *(shlex.quote(a) for a in raw)])
    try:
        store, plan, n_done = run_suite(suite, args.out, jobs=args.jobs)
    except TaskError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are saved; rerun the same command to resume",
              file=sys.stderr)
        return 130
    records = suite_records(store, suite)
    md = results_markdown(records, suite, command.strip())
    atomic_write_bytes(os.path.join(args.out, "results.md"), md.encode("utf-8"))
    figures = [] if args.no_figures else write_figures(records, suite, args.out)
    print()
    print(suite_tables(records, suite))
    print(f"{n_done} runs now, {len(records)} in the tables; results in "
          f"{os.path.join(args.out, 'results.json')}, table in "
          f"{os.path.join(args.out, 'results.md')}, {len(figures)} figures; "
          f"wall time {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
