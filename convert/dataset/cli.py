"""`masknet dataset build | contact | calibration`."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from .recipe import DEFAULT_RECIPE, REPO_ROOT, load_recipe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser(
        "build",
        help="photos -> face crops, recoloured and synthetic masks, train/val/test",
        description="Build the training data set from a recipe: find and crop the faces in the source photos, "
        "add recoloured masks and synthetic masks drawn on bare faces, and split by person into "
        "train/val/test with an index.csv (docs/dataset.md).",
    )
    b.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="recipe TOML (default: %(default)s)")
    b.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "build", help="output folder (default: %(default)s)")
    b.add_argument("--root", type=Path, default=None, help="data folder the recipe's source paths are relative to (overrides its root)")
    b.add_argument("--limit", type=int, default=0, help="at most N photos per source (quick trial builds)")
    b.add_argument("--no-contact", action="store_true", help="skip the contact sheets")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")

    c = sub.add_parser("contact", help="contact sheets (contact_<class>.png) of a built data set")
    c.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "build")
    c.add_argument("--per-class", type=int, default=64)

    a = sub.add_parser("audit", help="score every face of one source with the shipped Mask-net; contact sheets of doubtful ones")
    a.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="recipe TOML (default: %(default)s)")
    a.add_argument("--root", type=Path, default=None, help="data folder (overrides the recipe's root)")
    a.add_argument("--source", default="rwmfd", help="recipe source to audit (default: %(default)s)")
    a.add_argument("--models", type=Path, default=REPO_ROOT / "models", help="folder with manifest.json")
    a.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "audit")
    a.add_argument("--threshold", type=float, default=0.8, help="faces below this probability of the source's label are shown")

    k = sub.add_parser("calibration", help="write the int8 calibration list from a built data set")
    k.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "build")
    k.add_argument("--out", type=Path, default=REPO_ROOT / "calibration")
    k.add_argument("--count", type=int, default=300, help="images, 200..500 (default: %(default)s)")
    k.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        from .build import build, counts_table
        from .contact import contact_sheets

        recipe = load_recipe(args.recipe, args.root)
        if args.limit:
            recipe = replace(recipe, sources=tuple(replace(s, limit=args.limit) for s in recipe.sources))
        t0 = time.monotonic()
        info = build(recipe, args.out, progress=not args.no_progress)
        print(counts_table(info))
        report = info["report"]
        for source, reasons in report["skipped"].items():  # type: ignore[index]
            for reason, n in sorted(reasons.items()):
                print(f"  {source}: {reason}: {n}")
        if not args.no_contact:
            sheets = contact_sheets(args.out)
            print(f"contact sheets: {len(sheets)} in {args.out}")
        print(f"{info['images']} images, {info['groups']} groups in {args.out} ({time.monotonic() - t0:.0f} s)")
        return 0
    if args.action == "contact":
        from .contact import contact_sheets

        for p in contact_sheets(args.data, args.per_class):
            print(p)
        return 0
    if args.action == "audit":
        from .audit import audit_candidates

        faces, sheets = audit_candidates(load_recipe(args.recipe, args.root), args.source, args.models, args.out, args.threshold)
        print(f"{faces}; {len(sheets)} contact sheet(s) of candidates in {args.out}")
        return 0
    if args.action == "calibration":
        from .calibration import write_calibration

        listing, paths = write_calibration(args.data, args.out, args.count, args.seed)
        print(f"{len(paths)} images listed in {listing}")
        return 0
    raise AssertionError(args.action)
