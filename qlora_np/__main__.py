"""Command line: `python -m qlora_np <command> ...`.

  regress   run the regression experiment suite (the project's main job)
  golden    regenerate the golden vectors in parity/golden/

"QLoRA" here is Queryable LoRA (arXiv 2605.08423), not quantized LoRA.
"""

import sys

USAGE = __doc__


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "regress":
        from .experiments.cli import main as regress
        return regress(rest)
    if command == "golden":
        from .golden import main as golden
        return golden(rest)
    print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
