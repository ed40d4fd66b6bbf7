"""Command line: ``python -m anee_lite demo [--model M]``."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m anee_lite", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="full vs starved energy budget on one prompt (the seed's sanity check)")
    demo.add_argument("--model", default=None,
                      help="hub id, local folder or 'smollm2-135m' (default: gpt2 if the hub answers, else smollm2-135m)")
    demo.add_argument("--max-new-tokens", type=int, default=20)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_sanity_check

        run_sanity_check(args.model, args.max_new_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
