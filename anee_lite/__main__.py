"""Command line: ``python -m anee_lite demo [--model M]`` and ``python -m anee_lite evaluate ...``."""

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
    add_evaluate_parser(commands)
    return parser


def _target(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--target-agreement must be a number in (0, 1], got {value!r}") from None
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"--target-agreement must be in (0, 1], got {value}")
    return x


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, got {value!r}")
    return int(value)


def add_evaluate_parser(commands) -> None:
    from .controllers import CONTROLLER_NAMES
    from .evaluate import LENS_CHOICES

    ev = commands.add_parser("evaluate", help="agreement, cost and wall time of an exit controller on a text")
    ev.add_argument("--model", required=True, help="hub id, local folder or 'smollm2-135m'")
    ev.add_argument("--text", required=True, help="text file to evaluate on (teacher-forced)")
    ev.add_argument("--calibration-text", default=None,
                    help="text file to choose the threshold on (default: the shipped Python-docs calibration text)")
    ev.add_argument("--controller", required=True, choices=CONTROLLER_NAMES)
    ev.add_argument("--target-agreement", type=_target, default=0.9, help="in (0, 1]; default 0.9")
    ev.add_argument("--threshold", type=float, default=None, help="use this threshold instead of calibrating")
    ev.add_argument("--lens", choices=LENS_CHOICES, default="auto",
                    help="auto: the shipped tuned lens for smollm2-135m, else the logit lens")
    ev.add_argument("--max-tokens", type=_positive_int, default=512)
    ev.add_argument("--chunk", type=_positive_int, default=None,
                    help="tokens per teacher-forced chunk (default: 256, or the context window if shorter)")
    ev.add_argument("--json", required=True, help="where to write the results (JSON)")


def run_evaluate(args, parser: argparse.ArgumentParser) -> None:
    import json
    from pathlib import Path

    from .assets import DATA_DIR

    def read(option: str, path: str) -> str:
        p = Path(path)
        if not p.is_file():
            parser.error(f"{option}: no such file: {path}")
        text = p.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            parser.error(f"{option}: the file is empty: {path}")
        return text

    text = read("--text", args.text)
    if args.threshold is not None:
        calibration = None
    else:
        calibration = read("--calibration-text", args.calibration_text or str(DATA_DIR / "python_docs_calibration.txt"))
    from .evaluate import build_controller, evaluate, finite_or_none, format_result
    from .loading import load_pretrained
    from .model import UnrolledModel

    try:
        hf_model, tokenizer = load_pretrained(args.model)
        model = UnrolledModel(hf_model)
        controller = build_controller(model, args.model, args.controller, lens=args.lens, threshold=args.threshold)
        result = evaluate(model, tokenizer, text, controller, calibration_text=calibration,
                          target_agreement=args.target_agreement, max_tokens=args.max_tokens, chunk=args.chunk)
    except ValueError as err:
        parser.error(str(err))
    print(format_result(result))
    data = {k: finite_or_none(v) if isinstance(v, float) else v for k, v in result.as_dict().items()}
    Path(args.json).write_text(json.dumps({"model": args.model, "text": args.text, **data}, indent=1))
    print(f"wrote {args.json}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_sanity_check

        run_sanity_check(args.model, args.max_new_tokens)
    elif args.command == "evaluate":
        run_evaluate(args, parser)
    return 0


if __name__ == "__main__":
    sys.exit(main())
