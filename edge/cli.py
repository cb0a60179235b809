"""The `masknet` command.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen module is imported, so the edge commands
never pay for (or depend on) the training stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edge import __version__
from edge.errors import MasknetError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edge.commands.run", "run the door monitor: camera -> faces -> verdict -> LEDs/buzzer"),
    "detect": ("edge.commands.detect", "the face detector alone: JSON boxes per image or frame, --draw, --bench recall by face size"),
    "bench": ("edge.commands.bench", "measure per-stage latency, FPS and memory on this device"),
    "watch": ("edge.commands.watch", "show every door on the MQTT broker in one live table (or --json)"),
    "doctor": ("edge.commands.doctor", "check runtime, models, camera back ends and GPIO"),
    "evaluate": ("convert.evaluate", "score the exported models on a folder of labelled faces (LiteRT only)"),
    "dataset": ("convert.dataset.cli", "build the training data sets (face crops, recolouring, synthetic masks)"),
    "train": ("convert.train", "train Mask-net / I-Mask-net / the 5-class model"),
    "quantize": ("convert.quantize", "int8 quantization with the calibration set"),
    "decide": ("convert.decide", "choose Mask-net's prior shift for wrongly worn masks on real validation photos"),
    "export": ("convert.export", "write the models, manifest.json and REPORT.md to models/"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10}{desc}" for name, (_, desc) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="masknet",
        description="Mask-net Edge: is the mask worn, worn wrong, or missing?",
        epilog=f"commands:\n{lines}\n\nrun `masknet COMMAND --help` for a command's options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"masknet-edge {__version__}")
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv:
        # a command is required: show what there is, and say it was a usage error
        top.print_help(sys.stderr)
        return 2
    if argv[0].startswith("-"):
        top.parse_args(argv)
        return 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}")
    module_name, desc = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(
            f"masknet {name}: error: this command needs a package that is not installed ({exc.name}); "
            f"run ./install.sh{' --convert' if module_name.startswith('convert') else ''}",
            file=sys.stderr,
        )
        return 2
    parser = argparse.ArgumentParser(prog=f"masknet {name}", description=desc)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except MasknetError as exc:
        print(f"masknet {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"masknet {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
