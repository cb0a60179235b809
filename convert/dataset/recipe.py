"""Recipes: the small TOML files that say which folders become which training images.

A recipe names its sources, how each is laid out and labelled, and how faces are cropped,
recoloured, synthesised and split. Everything a build does is driven from here so that a user
can point the same tool at their own photos without touching code.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.classes import ALL_CLASSES, MASK, NO_MASK
from edge.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project also runs on Python 3.10 (Raspberry Pi OS)
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO_ROOT / "convert" / "recipes" / "shared.toml"

LAYOUTS = ("classes", "maskedfacenet", "unlabelled")
FACE_POLICIES = ("one", "dominant", "all")
WEARING_STATES = ("mask", "mask_over_nose_mouth", "mask_over_mouth_chin", "mask_over_chin")
RECOLOUR_STYLES = ("dark", "light", "random", "pattern")


@dataclass(frozen=True)
class SourceSpec:
    """One folder of photos and how to read it."""

    name: str
    path: Path
    layout: str = "classes"
    label: str | None = None  # the class of every photo, for layout = "unlabelled"
    classes: tuple[str, ...] = ()  # restrict to these class folders (empty: all present)
    ignore: tuple[str, ...] = ()  # sub-folder names that are not classes (e.g. "labels")
    faces: str = "one"  # one: exactly one face per photo; dominant: the clearly largest; all
    dominance: float = 2.0  # "dominant": largest face area / second largest must reach this
    min_face: float = 24.0  # faces narrower than this (pixels, source image) are skipped
    tight_fallback: int = 0  # a photo no larger than this (px) with no face found is used whole, as a face crop
    recolour: float = 0.0  # fraction of correctly worn (mask) faces that also get a recoloured copy
    synthesize: tuple[str, ...] = ()  # wearing states drawn onto every unmasked face of this source
    group_patterns: tuple[str, ...] = ()  # regexes on the file stem; group 1 = identity / burst id
    limit: int = 0  # at most this many photos (deterministic sample); 0 = all
    origin: str = "real"  # "synthetic" for sources whose masks were drawn on (MaskedFace-Net)
    identity_space: str = ""  # sources naming one id space (e.g. FFHQ ids) share identities; "" = own
    # Bursts: regexes whose group 1 names a series and group 2 a number (a camera counter, a
    # timestamp); files of one series whose numbers are at most `burst_gap` apart chain into one
    # identity (burst shots of one person under consecutive names).
    burst_patterns: tuple[str, ...] = ()
    burst_gap: int = 0
    synthesize_per_face: int = 0  # draw only this many of `synthesize` per face (seeded); 0 = all
    labels_csv: Path | None = None  # per-photo labels (columns file, class_id) overriding the folder's
    audit_csv: Path | None = None  # per-face decisions (file, x0, y0, x1, y1, label, reason): relabel or drop


@dataclass(frozen=True)
class Recipe:
    """A whole build: output format, sources and the knobs of every stage."""

    name: str
    path: Path | None
    seed: int = 0
    size: int = 224
    margin: float | None = None  # None: edge.crop's default, i.e. the margin the door uses
    align: bool = False
    jpeg_quality: int = 95
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    detector_score: float = 0.5
    pad: float = 0.4  # pad every photo by this fraction of its size before detecting
    phash_distance: int = 6  # 64-bit pHash Hamming distance that counts as a near duplicate
    templates: Path | None = None  # mask_templates folder (templates/, textures/, masks.cfg)
    recolour_styles: tuple[str, ...] = RECOLOUR_STYLES
    synth_templates: tuple[str, ...] = ()  # masks.cfg sections to use (empty: all usable ones)
    synth_recolour: float = 0.5  # fraction of synthetic masks recoloured before warping
    sources: tuple[SourceSpec, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)
    # index.csv-like CSV (base, split) of an earlier build: those photo faces keep their split
    split_pins: Path | None = None


def _where(path: Path | None) -> str:
    return str(path) if path is not None else "<recipe>"


def _expand(value: str, base: Path) -> Path:
    """`{repo}` is the checkout root; other relative paths are relative to the recipe file."""
    text = value.replace("{repo}", str(REPO_ROOT))
    p = Path(text).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _take(table: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    if key not in table:
        return default
    value = table[key]
    # bool is an int in Python; a "seed = true" typo must not pass as 1
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where}: setting {key!r} must be {_kind_name(kind)}, not {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: setting {key!r} must be {_kind_name(kind)}, not {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _str_list(table: dict[str, Any], key: str, where: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    values = _take(table, key, list, [], where)
    out = []
    for v in values:
        if not isinstance(v, str):
            raise ConfigError(f"{where}: setting {key!r} must be a list of strings, found {v!r}")
        if allowed is not None and v not in allowed:
            raise ConfigError(f"{where}: {key} has unknown value {v!r}; use one of {', '.join(allowed)}")
        out.append(v)
    return tuple(out)


_SOURCE_KEYS = {
    "name", "path", "layout", "label", "classes", "ignore", "faces", "dominance", "min_face",
    "tight_fallback", "recolour", "synthesize", "group_patterns", "limit", "origin",
    "identity_space", "burst_patterns", "burst_gap", "synthesize_per_face", "labels_csv", "audit_csv",
}


def _regex_list(table: dict[str, Any], key: str, groups: int, what: str, need: str, where: str) -> tuple[str, ...]:
    """A list of regexes, each compiled and checked to have at least `groups` capture groups."""
    patterns = _str_list(table, key, where)
    for pat in patterns:
        try:
            if re.compile(pat).groups < groups:
                raise ConfigError(f"{where}: {what} {pat!r} needs {need}")
        except re.error as exc:
            raise ConfigError(f"{where}: {what} {pat!r} is not a valid regex ({exc})") from None
    return patterns


def _parse_source(table: dict[str, Any], base: Path, where: str) -> SourceSpec:
    unknown = set(table) - _SOURCE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_SOURCE_KEYS))}")
    name = _take(table, "name", str, None, where)
    if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{where}: every [[source]] needs a name of letters, digits, '_', '.', '-'")
    where = f"{where} ({name})"
    path_text = _take(table, "path", str, None, where)
    if not path_text:
        raise ConfigError(f"{where}: setting 'path' is missing")
    layout = _take(table, "layout", str, "classes", where)
    if layout not in LAYOUTS:
        raise ConfigError(f"{where}: layout {layout!r} is unknown; use one of {', '.join(LAYOUTS)}")
    label = _take(table, "label", str, None, where)
    if layout == "unlabelled" and label is None:
        raise ConfigError(f"{where}: layout 'unlabelled' needs label = one of {', '.join(ALL_CLASSES)}")
    if label is not None and label not in ALL_CLASSES:
        raise ConfigError(f"{where}: label {label!r} is not a class id; use one of {', '.join(ALL_CLASSES)}")
    faces = _take(table, "faces", str, "one", where)
    if faces not in FACE_POLICIES:
        raise ConfigError(f"{where}: faces {faces!r} is unknown; use one of {', '.join(FACE_POLICIES)}")
    origin = _take(table, "origin", str, "real", where)
    if origin not in ("real", "synthetic"):
        raise ConfigError(f"{where}: origin must be 'real' or 'synthetic' (masks drawn on by someone else), not {origin!r}")
    recolour = float(_take(table, "recolour", (int, float), 0.0, where))
    if not 0.0 <= recolour <= 1.0:
        raise ConfigError(f"{where}: recolour must be a fraction between 0 and 1, not {recolour}")
    patterns = _regex_list(table, "group_patterns", 1, "group pattern", "one capture group (the identity)", where)
    bursts = _regex_list(table, "burst_patterns", 2, "burst pattern", "two capture groups (series, number)", where)
    synthesize = _str_list(table, "synthesize", where, WEARING_STATES)
    per_face = int(_take(table, "synthesize_per_face", int, 0, where))
    if not 0 <= per_face <= len(synthesize):
        raise ConfigError(f"{where}: synthesize_per_face must be 0 (all) .. {len(synthesize)} (the states listed), not {per_face}")
    files = {}
    for key in ("labels_csv", "audit_csv"):
        text = _take(table, key, str, None, where)
        if text is not None:
            files[key] = _expand(text, base)  # read (and checked) when the build lists the source
    return SourceSpec(
        name=name,
        path=_expand(path_text, base),
        layout=layout,
        label=label,
        classes=_str_list(table, "classes", where, ALL_CLASSES),
        ignore=_str_list(table, "ignore", where),
        faces=faces,
        dominance=float(_take(table, "dominance", (int, float), 2.0, where)),
        min_face=float(_take(table, "min_face", (int, float), 24.0, where)),
        tight_fallback=int(_take(table, "tight_fallback", int, 0, where)),
        recolour=recolour,
        synthesize=synthesize,
        group_patterns=patterns,
        limit=int(_take(table, "limit", int, 0, where)),
        origin=origin,
        identity_space=_take(table, "identity_space", str, "", where),
        burst_patterns=bursts,
        burst_gap=int(_take(table, "burst_gap", int, 0, where)),
        synthesize_per_face=per_face,
        labels_csv=files.get("labels_csv"),
        audit_csv=files.get("audit_csv"),
    )


def parse_recipe(data: dict[str, Any], path: Path | None = None, root: Path | None = None) -> Recipe:
    """Validate a recipe mapping. `root` replaces the recipe's own `root` (the data folder)."""
    where = _where(path)
    base = path.parent if path is not None else Path.cwd()
    root_text = _take(data, "root", str, None, where)
    data_root = root if root is not None else (_expand(root_text, base) if root_text else base)
    out = _take(data, "output", dict, {}, where)
    crop = _take(data, "crop", dict, {}, where)
    det = _take(data, "detector", dict, {}, where)
    split = _take(data, "split", dict, {}, where)
    synth = _take(data, "synthetic", dict, {}, where)
    rec = _take(data, "recolour", dict, {}, where)

    fractions = _take(split, "fractions", list, [0.8, 0.1, 0.1], f"{where} [split]")
    if len(fractions) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"{where} [split]: fractions must be three non-negative numbers (train, val, test) summing to 1, not {fractions}")
    size = int(_take(crop, "size", int, 224, f"{where} [crop]"))
    if not 32 <= size <= 1024:
        raise ConfigError(f"{where} [crop]: size must be between 32 and 1024 pixels, not {size}")
    margin = _take(crop, "margin", (int, float), None, f"{where} [crop]")
    quality = int(_take(out, "jpeg_quality", int, 95, f"{where} [output]"))
    if not 50 <= quality <= 100:
        raise ConfigError(f"{where} [output]: jpeg_quality must be 50..100, not {quality}")
    templates_text = _take(synth, "templates", str, None, f"{where} [synthetic]")

    sources_raw = _take(data, "source", list, [], where)
    if not sources_raw:
        raise ConfigError(f"{where}: no [[source]] tables; a recipe needs at least one source folder")
    sources = []
    for i, table in enumerate(sources_raw):
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: source #{i + 1} must be a [[source]] table")
        sources.append(_parse_source(table, data_root, f"{where} source #{i + 1}"))
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: source name(s) used twice: {', '.join(dupes)}")
    if any(s.synthesize for s in sources) and templates_text is None:
        raise ConfigError(f"{where}: a source asks for synthetic masks but [synthetic] templates = '...' (the mask_templates folder) is not set")
    for s in sources:
        if s.synthesize and s.label not in (None, NO_MASK) and s.layout == "unlabelled":
            raise ConfigError(f"{where} ({s.name}): synthetic masks are drawn on unmasked faces; label must be {NO_MASK!r}")
        if s.recolour and s.layout == "unlabelled" and s.label != MASK:
            raise ConfigError(f"{where} ({s.name}): recolour applies to correctly worn masks; label must be {MASK!r}")

    return Recipe(
        name=str(_take(data, "name", str, path.stem if path else "recipe", where)),
        path=path,
        seed=int(_take(data, "seed", int, 0, where)),
        size=size,
        margin=None if margin is None else float(margin),
        align=_take(crop, "align", bool, False, f"{where} [crop]"),
        jpeg_quality=quality,
        split=(float(fractions[0]), float(fractions[1]), float(fractions[2])),
        detector_score=float(_take(det, "min_score", (int, float), 0.5, f"{where} [detector]")),
        pad=float(_take(det, "pad", (int, float), 0.4, f"{where} [detector]")),
        phash_distance=int(_take(split, "phash_distance", int, 6, f"{where} [split]")),
        templates=_expand(templates_text, data_root) if templates_text else None,
        recolour_styles=_str_list(rec, "styles", f"{where} [recolour]", RECOLOUR_STYLES) or RECOLOUR_STYLES,
        synth_templates=_str_list(synth, "use", f"{where} [synthetic]"),
        synth_recolour=float(_take(synth, "recolour", (int, float), 0.5, f"{where} [synthetic]")),
        sources=tuple(sources),
        raw=data,
        split_pins=_pins_file(split, base, f"{where} [split]"),
    )


def _pins_file(split: dict[str, Any], base: Path, where: str) -> Path | None:
    text = _take(split, "pins", str, None, where)
    if text is None:
        return None
    path = _expand(text, base)
    if not path.is_file():
        raise ConfigError(f"{where}: pins = {text!r}: {path} not found (a CSV with base and split columns, "
                          "e.g. an earlier build's index.csv)")
    return path


def load_recipe(path: str | Path, root: str | Path | None = None) -> Recipe:
    """Read and validate a recipe file; every problem is a one-line ConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe {p} not found; pass --recipe PATH (the default is {DEFAULT_RECIPE.relative_to(REPO_ROOT)})")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipe {p} is not valid TOML: {exc}") from None
    return parse_recipe(data, p.resolve(), Path(root).resolve() if root is not None else None)
