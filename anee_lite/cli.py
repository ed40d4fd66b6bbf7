"""Command line: ``python -m anee_lite demo [--model M]`` (the seed's sanity check), ``... evaluate ...`` and
``... simulate ...`` (time and energy per token on a device profile)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "The future of artificial intelligence is"


def pick_model(requested: str | None = None) -> tuple[str, str]:
    """The model to run and why: GPT-2 when the hub answers, else the offline SmolLM2."""
    from .io.loading import OFFLINE_ALIAS, hub_reachable

    if requested is not None:  # an empty --model '' is a mistake to report, not a request for the default
        return requested, "as requested"
    if hub_reachable():
        return "gpt2", "the HuggingFace hub is reachable"
    return OFFLINE_ALIAS, "the HuggingFace hub is not reachable, so the offline model runs instead of GPT-2"


def run_sanity_check(model_name: str | None = None, max_new_tokens: int = 20) -> dict:
    """Generate from :data:`PROMPT` with energy_budget 1.0 and 0.05 and print what happened.

    Returns:
        ``{"model", "n_layers", "runs": [{"energy_budget", "layers_executed", "text", "seconds"}]}``.
    """
    from .config import ANEEConfig
    from .wrapper import ANEEWrapper

    name, why = pick_model(model_name)
    print(f"Model: {name} ({why})")
    model = ANEEWrapper(ANEEConfig(model_name=name))  # the seed's default knobs
    cfg = model.config
    print(f"{model.n_layers} layers; min_layers={cfg.min_layers}, exit_budget_threshold={cfg.exit_budget_threshold}; "
          f"prompt: {PROMPT!r}")
    print("The seed's rule runs layer l while energy_budget - l / n_layers >= exit_budget_threshold (the first "
          "min_layers always run), so even a full budget stops a little short of the last layer.\n")
    runs = []
    for budget, label in ((1.0, "Full budget"), (0.05, "Low budget")):
        start = time.perf_counter()
        text = model.generate(prompt=PROMPT, max_new_tokens=max_new_tokens, energy_budget=budget)
        seconds = time.perf_counter() - start
        layers = model.exit_layer(budget)
        print(f"{label} (energy_budget={budget}): {layers}/{model.n_layers} layers per token, {seconds:.1f} s")
        print(f"  {text!r}\n")
        runs.append({"energy_budget": budget, "layers_executed": layers, "text": text, "seconds": seconds})
    return {"model": name, "n_layers": model.n_layers, "runs": runs}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m anee_lite", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="full vs starved energy budget on one prompt (the seed's sanity check)")
    demo.add_argument("--model", default=None,
                      help="hub id, local folder or 'smollm2-135m' (default: gpt2 if the hub answers, else smollm2-135m)")
    demo.add_argument("--max-new-tokens", type=_int_at_least(0), default=20, help="an integer >= 0; default 20")
    add_evaluate_parser(commands)
    add_simulate_parser(commands)
    return parser


def _target(value: str) -> float:
    from .adaptive.calibration import check_target_agreement

    try:
        return check_target_agreement(float(value))
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"--target-agreement must be in (0, 1], got {value!r}") from None


def _delta(value: str) -> float:
    from .adaptive.guarantee import check_delta

    try:
        return check_delta(float(value))
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"--delta must be in (0, 1), got {value!r}") from None


def _int_at_least(low: int):
    def parse(value: str) -> int:
        try:
            x = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value!r}") from None
        if x < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {x}")
        return x
    return parse


def add_evaluate_parser(commands) -> None:
    from .adaptive.controllers import controller_names
    from .adaptive.evaluate import CALIBRATION_TOKENS, LENS_CHOICES
    from .adaptive.real_calibration import SPEED_CHECK_TOKENS
    from .core.cache import CONTROLLER_KV_FILL, KV_FILLS

    ev = commands.add_parser("evaluate", help="agreement, cost and wall time of an exit controller on a text")
    ev.add_argument("--model", required=True, help="hub id, local folder or 'smollm2-135m'")
    ev.add_argument("--text", required=True, help="text file to evaluate on (teacher-forced)")
    ev.add_argument("--calibration-text", default=None,
                    help="text file to choose the threshold on (default: the shipped Python-docs calibration text)")
    ev.add_argument("--controller", required=True, choices=controller_names())
    ev.add_argument("--target-agreement", type=_target, default=0.9, help="in (0, 1]; default 0.9")
    ev.add_argument("--threshold", type=float, default=None, help="use this threshold instead of calibrating")
    ev.add_argument("--delta", type=_delta, default=0.1,
                    help="calibration confidence is 1 - delta: the chance the promise fails; in (0, 1), default 0.1")
    ev.add_argument("--lens", choices=LENS_CHOICES, default="auto",
                    help="auto: the shipped tuned lens for smollm2-135m, else the logit lens")
    ev.add_argument("--max-tokens", type=_int_at_least(2), default=512, help="tokens of --text to evaluate on")
    ev.add_argument("--calibration-tokens", type=_int_at_least(2), default=CALIBRATION_TOKENS,
                    help=f"tokens of the calibration text to calibrate on (default {CALIBRATION_TOKENS}; the bound "
                         "tightens with more)")
    ev.add_argument("--chunk", type=_int_at_least(2), default=None,
                    help="tokens per teacher-forced chunk (default: 256, or the context window if shorter)")
    ev.add_argument("--exit-layers", type=int, nargs="+", default=None, metavar="LAYER",
                    help="layers where tokens may stop (default: the shipped lens's for smollm2-135m, else every "
                         "layer); fewer layers, fewer checks per token")
    ev.add_argument("--kv-fill", choices=KV_FILLS, default=CONTROLLER_KV_FILL,
                    help="how an exited token's deeper keys/values are filled: catch_up (default: its skipped layers "
                         "run in full beside a later token, exact keys, no FLOPs saved; the promise holds with it) "
                         "or propagate (from its frozen residual, CALM's way: cheaper, but later tokens drift)")
    ev.add_argument("--speed-check-tokens", type=_int_at_least(0), default=SPEED_CHECK_TOKENS,
                    help=f"after calibrating, decode this many calibration tokens with the threshold and at full depth "
                         f"and switch exit off if it is not faster here (default {SPEED_CHECK_TOKENS}; 0: keep the "
                         "cost model's choice)")
    ev.add_argument("--json", required=True, help="where to write the results (JSON)")


def run_evaluate(args, parser: argparse.ArgumentParser) -> None:
    from .io.assets import DATA_DIR

    def read(option: str, path: str) -> str:
        p = Path(path)
        if not p.is_file():
            parser.error(f"{option}: no such file: {path}")
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            parser.error(f"{option}: cannot read {path}: {err.strerror or err}")
        if not text.strip():
            parser.error(f"{option}: the file is empty: {path}")
        return text

    calibration_path = None if args.threshold is not None else (
        args.calibration_text or str(DATA_DIR / "python_docs_calibration.txt"))
    # Minutes of evaluation must not end in a path error, nor overwrite the text they read.
    check_output_path(parser, "--json", args.json, {"--text": args.text, "--calibration-text": calibration_path},
                      args.model)
    text = read("--text", args.text)
    calibration = None if calibration_path is None else read("--calibration-text", calibration_path)
    from .adaptive.evaluate import build_controller, evaluate, finite_or_none, format_result
    from .core.model import UnrolledModel
    from .io.loading import load_pretrained

    try:
        hf_model, tokenizer = load_pretrained(args.model)
        model = UnrolledModel(hf_model, share_weights=True)  # the library loaded it: no second copy
        controller = build_controller(model, args.model, args.controller, lens=args.lens, threshold=args.threshold,
                                      exit_layers=args.exit_layers)
        result = evaluate(model, tokenizer, text, controller, calibration_text=calibration,
                          target_agreement=args.target_agreement, max_tokens=args.max_tokens, chunk=args.chunk,
                          delta=args.delta, calibration_tokens=args.calibration_tokens, kv_fill=args.kv_fill,
                          speed_check_tokens=args.speed_check_tokens)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    print(format_result(result))
    def finite(value):  # JSON has no inf: a threshold of "never exit" is written as null
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        return finite_or_none(value) if isinstance(value, float) else value

    data = finite(result.as_dict())
    write_json(parser, args.json, {"model": args.model, "text": args.text, **data})


def write_json(parser: argparse.ArgumentParser, path: str, data: dict) -> None:
    """Write ``--json`` atomically; a failure now (e.g. the disk filled up) exits 1, the printed numbers stand."""
    import json

    from .io.files import write_atomically

    try:
        write_atomically(path, json.dumps(data, indent=1))
    except OSError as err:
        parser.exit(1, f"{parser.prog}: error: --json: could not write {path}: {err.strerror or err}\n")
    print(f"wrote {path}")


def check_output_path(parser: argparse.ArgumentParser, option: str, path: str, inputs: dict[str, str | None],
                      model: str | None = None) -> None:
    """Refuse (exit 2) an output path that cannot be written, is a folder, is one of the input files, or
    lies inside a folder the model is read from (:func:`~anee_lite.io.loading.model_folders`: a local model
    folder; the offline model's cache and GGUF for its alias; a hub model's folder in HuggingFace's cache) or
    inside the shipped data the commands read (texts, tuned lens, exit probe).

    Every command that writes a file checks each output path here before loading anything.
    """
    from .io.assets import DATA_DIR
    from .io.loading import model_folders

    p = Path(path)
    if p.is_dir():
        parser.error(f"{option}: {path} is a folder; give a file name such as {p / 'results.json'}")
    for folder in model_folders(model):
        if p.resolve().is_relative_to(folder):
            parser.error(f"{option}: {path} is inside the model folder {folder}; writing there could overwrite "
                         "the model's own files (config, weights, tokenizer): choose a path outside it")
    folder = p.parent
    if not folder.is_dir():
        parser.error(f"{option}: the folder {folder} does not exist; create it first or choose another path")
    try:  # os.access says yes to root even where writing fails (read-only mounts, /proc): really try
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        parser.error(f"{option}: cannot write in {folder} ({err.strerror or err}); choose a folder you can write to")
    if p.exists() and not os.access(p, os.W_OK):
        parser.error(f"{option}: {path} is not writable; choose a path in a folder you can write to")
    for other, input_path in inputs.items():
        if input_path is not None and p.exists() and Path(input_path).exists() and os.path.samefile(p, input_path):
            parser.error(f"{option}: {path} is the {other} file; writing the results there would destroy it")
    if p.resolve().is_relative_to(DATA_DIR.resolve()):
        parser.error(f"{option}: {path} is inside anee-lite's shipped data folder {DATA_DIR} (texts, tuned lens, "
                     "exit probe, results the commands read): choose a path outside it")


def _budget(value: str) -> float:
    import math

    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {value!r}") from None
    if math.isnan(x) or not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return x


def add_simulate_parser(commands) -> None:
    from .cost.constants import DTYPES
    from .cost.simulator import DEFAULT_DECODE_CONTEXT, KERNELS

    sim = commands.add_parser("simulate", help="time and energy per token of a model on a device profile")
    sim.add_argument("--list-devices", action="store_true", help="print the known devices, one a line, and exit")
    sim.add_argument("--model", help="hub id, local folder or 'smollm2-135m'")
    sim.add_argument("--device", help="a device name (see --list-devices) or a .json/.yaml profile file")
    depth = sim.add_mutually_exclusive_group()
    depth.add_argument("--layers", type=_int_at_least(0), default=None, help="layers every token runs (default: all)")
    depth.add_argument("--energy-budget", type=_budget, default=None,
                       help="the seed's energy_budget in [0, 1] (min_layers=2, exit_budget_threshold=0.1)")
    sim.add_argument("--batch", type=_int_at_least(1), default=1, help="rows decoded together; default 1")
    sim.add_argument("--context", type=_int_at_least(1), default=None,
                     help=f"keys each decoded token attends over; default {DEFAULT_DECODE_CONTEXT} (or the "
                          "context window if shorter)")
    sim.add_argument("--dtype", choices=DTYPES, default="fp32", help="weight dtype; default fp32")
    sim.add_argument("--kernels", choices=KERNELS, default="eager",
                     help="eager: PyTorch operator calls as anee-lite makes them; fused: one kernel per op")
    sim.add_argument("--json", help="where to write the results (JSON)")


def run_simulate(args, parser: argparse.ArgumentParser) -> None:
    """``simulate``: one decoding step on the device, printed and written as JSON."""
    from .cost.devices import device_names, get_profile

    if args.list_devices:
        for name in device_names():
            print(name)
        return
    for option in ("model", "device", "json"):
        if getattr(args, option) is None:
            parser.error(f"simulate: --{option} is required (unless --list-devices)")
    check_output_path(parser, "--json", args.json, {"--device": args.device}, args.model)
    try:
        profile = get_profile(args.device)
    except (ValueError, TypeError) as err:
        parser.error(f"--device: {err}")
    from .budget import budget_exit_layer
    from .core.model import UnrolledModel
    from .cost.simulator import decode_context, simulate_decode
    from .io.loading import load_pretrained

    try:
        hf_model, _ = load_pretrained(args.model)
    except (ValueError, OSError) as err:
        parser.error(f"--model: {err}")
    dims = UnrolledModel(hf_model, share_weights=True).dims  # our own copy: no need to copy it again
    if args.layers is not None and args.layers > dims.n_layers:
        parser.error(f"--layers must be in [0, {dims.n_layers}] for {args.model}, got {args.layers}")
    try:
        context = decode_context(dims, args.context)
    except ValueError as err:
        parser.error(f"--context: {err} (the model's context window is {dims.n_ctx} tokens)")
    layers = args.layers
    if args.energy_budget is not None:
        layers = budget_exit_layer(dims.n_layers, args.energy_budget)  # the seed's min_layers and threshold
    result = simulate_decode(dims, profile, layers=layers, context=context, batch=args.batch,
                             dtype=args.dtype, kernels=args.kernels)
    data = {"model": args.model, "layers": dims.n_layers if layers is None else layers,
            "n_layers": dims.n_layers, "kernels": args.kernels, "validated": profile.validated,
            **result.as_dict(), "context": context}  # the keys each step attends over, as asked (not the cache before it)
    shares = result.bound_shares()
    print(f"{args.model} on {profile.name} ({args.dtype}, batch {args.batch}, context {context}, "
          f"{data['layers']}/{dims.n_layers} layers): {1e3 * result.seconds_per_token:.3f} ms/token, "
          f"{1e3 * result.joules_per_token:.3f} mJ/token, {result.bytes_per_token / 1e6:.1f} MB/token; "
          f"time {shares['memory']:.0%} memory-bound, {shares['compute']:.0%} compute-bound, "
          f"{shares['overhead']:.0%} overhead" + ("" if profile.validated else " (profile not validated)"))
    if not result.fits_in_memory:
        need = result.weight_bytes + result.kv_cache_bytes + result.activation_bytes
        print(f"warning: this does not fit in {profile.name}'s {profile.memory_bytes / 2**30:.0f} GiB: "
              f"{need / 2**30:.1f} GiB needed (weights {result.weight_bytes / 2**30:.1f}, KV cache "
              f"{result.kv_cache_bytes / 2**30:.1f}, activations {result.activation_bytes / 2**30:.1f} GiB at batch "
              f"{args.batch}, context {context})", file=sys.stderr)
    write_json(parser, args.json, data)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        try:
            run_sanity_check(args.model, args.max_new_tokens)
        except (ValueError, TypeError) as err:  # a bad --model (no such folder, not GPT-2/Llama, damaged)
            parser.error(str(err))
    elif args.command == "evaluate":
        run_evaluate(args, parser)
    elif args.command == "simulate":
        run_simulate(args, parser)
    return 0

