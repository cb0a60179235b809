"""`masknet dataset build`: photos -> face crops (+ recoloured, + synthetic) -> identity-disjoint splits.

Two passes. The first reads every photo once, crops its faces with the door's crop function and
writes every image (real, recoloured, synthetic) to a staging folder, remembering which base face
each came from and the perceptual hash of every base face. The second merges base faces into
groups (same identity by file name, same photo, near-duplicate pixels), splits the groups and
moves the files into place. Everything random is seeded per base face, so the result does not
depend on the order photos are read in.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.classes import ALL_CLASSES, MASK, MASKNET_CLASSES, NO_MASK, SUBTYPES, masknet_label
from edge.crop import CROP_MARGIN, CropSpec
from edge.detector import BlazeFaceDetector, Face
from edge.errors import ConfigError
from edge.face_mesh import FaceLandmarker
from edge.paths import sha256_file

from .audit import FaceAudit, load_audit
from .faces import FoundFace, best_match, choose_faces, detect
from .phash import UnionFind, group_near_duplicates, phash_pair
from .recipe import REPO_ROOT, Recipe, SourceSpec
from .recolour import load_textures, recolour_face
from .sources import SourceItem, list_source
from .split import SPLITS, assign_splits, pinned_split, read_split_pins
from .synth import Template, draw_mask, load_templates, state_is_right

ORIGINS = ("real", "recoloured", "synthetic")
INDEX_COLUMNS = ("path", "split", "label", "origin", "source", "group", "base", "detail")
OUR_OUTPUTS = ("train", "val", "test", ".staging", "index.csv", "dataset.json")


@dataclass
class Record:
    """One output image."""

    staged: str  # file name in the staging folder
    name: str  # final file name
    label: str
    origin: str
    source: str
    base: str  # id of the base face it was made from: "<source>/<rel>#<face>"
    detail: str = ""  # how it was made (detector note, template/style, recolour style)


@dataclass
class BaseFace:
    base: str
    source: str
    label: str
    photo: str  # "<source>/<rel>": faces of one photo stay together
    identity: str | None
    hashes: tuple[int, int]


@dataclass
class Report:
    """Counts of everything read, made, skipped and lost, per source/class."""

    photos: Counter[str] = field(default_factory=Counter)
    faces: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def as_dict(self) -> dict[str, object]:
        return {
            "photos_read": dict(self.photos),
            "base_faces": dict(self.faces),
            "skipped": {k: dict(v) for k, v in sorted(self.skipped.items())},
        }


def stable_seed(seed: int, text: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{text}".encode()).digest()[:8], "little")


def code_version() -> str:
    """`git describe` of the checkout, "-dirty" only when code that shapes the images (the
    dataset package, recipes, edge's crop / detector / landmarks) has uncommitted changes."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        version = git("describe", "--always", "--tags") or "unknown"
        if git("status", "--porcelain", "--", "convert/dataset", "convert/recipes", "edge"):
            version += "-dirty"
        return version
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def read_rgb(path: Path) -> np.ndarray | None:
    """The photo as RGB uint8, or None when it cannot be decoded (counted by the caller)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def is_grey(image: np.ndarray, tolerance: int = 6) -> bool:
    """True for a photo stored as three channels of grey (JPEG chroma noise stays within tolerance)."""
    small = image[:: max(1, image.shape[0] // 64), :: max(1, image.shape[1] // 64)].astype(np.int16)
    return bool(np.abs(small - small.mean(axis=2, keepdims=True)).max() <= tolerance)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:120] or "x"


class Builder:
    """Runs one recipe into one output folder."""

    def __init__(self, recipe: Recipe, out: Path, progress: bool = True, log: Callable[[str], None] | None = None) -> None:
        self.recipe = recipe
        self.out = out
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        try:
            # the contract every later stage reads back (dataset.json -> summary.json -> manifest)
            self.crop = CropSpec(recipe.size, CROP_MARGIN if recipe.margin is None else recipe.margin, recipe.align)
        except ValueError as exc:
            raise ConfigError(f"{recipe.path or 'recipe'} [crop]: {exc}") from None
        self.report = Report()
        self.pin_stats: dict[str, object] | None = None
        self.records: list[Record] = []
        self.bases: list[BaseFace] = []
        self.detector = BlazeFaceDetector(score_threshold=recipe.detector_score, num_threads=1)
        self._landmarker: FaceLandmarker | None = None
        self._templates: dict[str, list[Template]] | None = None
        self.textures: list[np.ndarray] = []
        self.audits: dict[str, FaceAudit] = {s.name: load_audit(s.audit_csv) for s in recipe.sources if s.audit_csv is not None}
        if recipe.templates is not None:
            self.textures = load_textures(recipe.templates / "textures")

    # -- lazily loaded pieces (a recipe without synthetic masks needs no mesh model) --
    @property
    def landmarker(self) -> FaceLandmarker:
        if self._landmarker is None:
            self._landmarker = FaceLandmarker(num_threads=1)
        return self._landmarker

    @property
    def templates(self) -> dict[str, list[Template]]:
        if self._templates is None:
            assert self.recipe.templates is not None
            self._templates = load_templates(self.recipe.templates, self.recipe.synth_templates)
        return self._templates

    # -- output folder --
    def prepare_out(self) -> Path:
        out = self.out
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; pass a folder")
        if out.is_dir() and any(out.iterdir()):
            if not ((out / "dataset.json").exists() or (out / ".staging").exists()):
                raise ConfigError(f"--out {out} is not empty and holds no earlier build (no dataset.json); choose an empty or new folder")
            for name in OUR_OUTPUTS:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
            for p in out.glob("contact_*.png"):
                p.unlink()
        staging = out / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    def _write(self, staging: Path, crop: np.ndarray, record: Record) -> None:
        bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
        ok = cv2.imwrite(str(staging / record.staged), bgr, [cv2.IMWRITE_JPEG_QUALITY, self.recipe.jpeg_quality])
        if not ok:
            raise ConfigError(f"cannot write {staging / record.staged}; check free disk space and permissions on --out")
        self.records.append(record)

    def _crop(self, image: np.ndarray, face: Face) -> np.ndarray:
        return self.crop.cut(image, face.box, face.keypoints)

    # -- pass 1 --
    def process(self, item: SourceItem, spec: SourceSpec, staging: Path) -> None:
        key = f"{spec.name}/{item.label}"
        skipped = self.report.skipped[key]
        self.report.photos[key] += 1
        image = read_rgb(item.path)
        if image is None:
            skipped["unreadable image"] += 1
            return
        found = choose_faces(image, self.detector, spec, self.recipe.pad, skipped, self.crop.margin)
        labels = [item.label] * len(found)
        audit = self.audits.get(spec.name)
        if audit is not None:
            found, labels = self._audited(audit, item, found, labels, skipped)
        photo = f"{spec.name}/{item.rel}"
        stem = _safe(f"{spec.name}__{Path(item.rel).with_suffix('').as_posix()}")
        grey = is_grey(image)
        for k, (ff, label) in enumerate(zip(found, labels, strict=True)):
            base = f"{photo}#{k}"
            rng = np.random.default_rng(stable_seed(self.recipe.seed, base))
            crop = self._crop(image, ff.face)
            name = f"{stem}__f{k}"
            self._write(staging, crop, Record(f"{len(self.records):07d}.jpg", f"{name}.jpg", label, spec.origin, spec.name, base, ff.how))
            self.bases.append(BaseFace(base, spec.name, label, photo, item.identity, phash_pair(crop)))
            self.report.faces[key] += 1
            if label != item.label:  # relabelled by the audit: only the listed face, nothing drawn on it
                continue
            if label == MASK and spec.recolour > 0 and rng.random() < spec.recolour:
                self._recolour(image, ff.face, rng, staging, item, spec, base, name, skipped)
            if label == NO_MASK and spec.synthesize:
                self._synthesize(image, ff.face, rng, spec, staging, base, name, skipped, grey)

    def _audited(self, audit: FaceAudit, item: SourceItem, found: list[FoundFace], labels: list[str],
                 skipped: Counter[str]) -> tuple[list[FoundFace], list[str]]:
        """Apply the committed per-face decisions: a listed face is relabelled or dropped."""
        kept, kept_labels = [], []
        for ff, label in zip(found, labels, strict=True):
            decision = audit.decision(item.rel, ff.face.box)
            if decision is None:
                kept.append(ff)
                kept_labels.append(label)
            elif decision.label == "drop":
                skipped[f"audit: {label} face dropped"] += 1
            else:
                if decision.label != label:
                    skipped[f"audit: {label} -> {decision.label}"] += 1
                else:
                    skipped[f"audit: {label} confirmed"] += 1
                kept.append(ff)
                kept_labels.append(decision.label)
        return kept, kept_labels

    def _recolour(self, image: np.ndarray, face: Face, rng: np.random.Generator, staging: Path,
                  item: SourceItem, spec: SourceSpec, base: str, name: str, skipped: Counter[str]) -> None:
        result = recolour_face(image, face, rng, self.recipe.recolour_styles, self.textures)
        if result is None:
            skipped["recolour: no light-blue mask in the lower face"] += 1
            return
        recoloured, style = result
        # a recoloured copy of a drawn-on mask is still a drawn-on mask
        origin = "recoloured" if spec.origin == "real" else spec.origin
        self._write(staging, self._crop(recoloured, face),
                    Record(f"{len(self.records):07d}.jpg", f"{name}__rc-{style}.jpg", item.label, origin, item.source, base, f"recoloured/{style}"))

    def _synthesize(self, image: np.ndarray, face: Face, rng: np.random.Generator, spec: SourceSpec,
                    staging: Path, base: str, name: str, skipped: Counter[str], grey: bool = False) -> None:
        # Tight face photos end at the chin; a mask drawn there would be cut by the photo's edge
        # and then smeared into stripes by the crop's replicated border. Replicating the border
        # first (the same pixels the crop would invent) lets the mask be drawn whole.
        pad = int(np.ceil(0.6 * max(face.width, face.height)))
        canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        face = face.translated(pad, pad)
        landmarks = self.landmarker.landmarks(canvas, face)
        if landmarks is None:
            skipped["synthetic: landmarks not found (face skipped)"] += 1
            return
        states = list(spec.synthesize)
        if spec.synthesize_per_face:
            # a seeded subset per face: every state still appears on about the same share of faces
            states = [states[i] for i in sorted(rng.permutation(len(states))[: spec.synthesize_per_face])]
        for state in states:
            syn = None
            try:
                # the label must be true: nose / mouth / chin covered or bare exactly as the state
                # says; a draw that misses (odd pose, landmark jitter) is redrawn, then dropped
                for _ in range(3):
                    candidate = draw_mask(canvas, landmarks, state, self.templates, rng, self.recipe.synth_recolour,
                                          self.recipe.recolour_styles, self.textures)
                    if state_is_right(candidate.alpha, landmarks.points, state):
                        syn = candidate
                        break
            except ValueError:
                skipped[f"synthetic {state}: landmarks unusable"] += 1
                continue
            if syn is None:
                skipped[f"synthetic {state}: coverage check failed 3 times (dropped)"] += 1
                continue
            if grey:
                # a greyscale photo (LFW's copy here) must not gain a coloured mask: colour alone
                # would then tell masked from bare faces
                syn.image = cv2.cvtColor(cv2.cvtColor(syn.image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
                note_grey = "/grey"
            else:
                note_grey = ""
            # crop where the door's detector finds the masked face, as it will at the door
            faces, _ = detect(syn.image, self.detector, self.recipe.pad)
            match = best_match(faces, face)
            note = f"{syn.template}/{syn.style}{note_grey}"
            if match is None:
                skipped[f"synthetic {state}: not re-detected, cropped at the unmasked box"] += 1
                match, note = face, note + "/base-box"
            self._write(staging, self._crop(syn.image, match),
                        Record(f"{len(self.records):07d}.jpg", f"{name}__syn-{state}.jpg", state, "synthetic", spec.name, base, note))

    # -- pass 2 --
    def group(self) -> dict[str, str]:
        """base id -> group id. Same identity, same photo or near-duplicate pixels share a group."""
        n = len(self.bases)
        uf = UnionFind(n)
        first: dict[str, int] = {}
        for i, b in enumerate(self.bases):
            for key in (f"photo:{b.photo}", f"id:{b.identity}" if b.identity else None):
                if key is None:
                    continue
                if key in first:
                    uf.union(first[key], i)
                else:
                    first[key] = i
        group_near_duplicates([b.hashes[0] for b in self.bases], [b.hashes[1] for b in self.bases],
                              self.recipe.phash_distance, uf)
        out = {}
        for i, b in enumerate(self.bases):
            root = self.bases[uf.find(i)].base
            out[b.base] = "g" + hashlib.sha1(root.encode()).hexdigest()[:12]
        return out

    def split(self, groups: dict[str, str]) -> dict[str, str]:
        members: dict[str, list[BaseFace]] = defaultdict(list)
        for b in self.bases:
            members[groups[b.base]].append(b)
        size = Counter(groups[r.base] for r in self.records)
        pins = read_split_pins(self.recipe.split_pins) if self.recipe.split_pins else {}
        pinned: dict[str, str] = {}
        strata = {}
        for gid, bs in members.items():
            # a group with a pinned photo keeps the split an earlier build gave it: a relabel or a
            # new photo must not re-draw the split of everything else (docs/dataset.md, "Split")
            where = pinned_split([b.base for b in bs], pins)
            if where is not None:
                pinned[gid] = where
                continue
            # the group's stratum is its most common (source, class), ties broken by name
            key = min(Counter((b.source, b.label) for b in bs).items(), key=lambda kv: (-kv[1], kv[0]))[0]
            strata[gid] = (f"{key[0]}/{key[1]}", size[gid])
        if pins:
            self.pin_stats = {
                "file": str(self.recipe.split_pins), "sha256": sha256_file(self.recipe.split_pins),
                "pinned_groups": len(pinned), "drawn_groups": len(strata),
                "pinned_images": sum(size[g] for g in pinned), "drawn_images": sum(size[g] for g in strata),
            }
            self.log(f"split pins: {len(pinned)} groups keep their split, {len(strata)} new ones drawn")
        return {**assign_splits(strata, self.recipe.split, self.recipe.seed), **pinned}

    def run(self) -> dict[str, object]:
        t0 = time.monotonic()
        items: list[tuple[SourceItem, SourceSpec]] = []
        for spec in self.recipe.sources:
            listed = list_source(spec, self.report.skipped[spec.name])
            items += [(it, spec) for it in listed]
            self.log(f"source {spec.name}: {len(listed)} photos in {spec.path}")
        if self.recipe.templates is not None and any(s.synthesize for s in self.recipe.sources):
            self.log(f"mask templates: {', '.join(sorted(self.templates))}; {len(self.textures)} textures")
        staging = self.prepare_out()
        bar = _progress(len(items), "photos", self.progress)
        for item, spec in items:
            self.process(item, spec, staging)
            bar.update(1)
            bar.set_postfix(images=len(self.records), refresh=False)
        bar.close()
        for name, audit in self.audits.items():
            lost = audit.unused()
            if lost:  # the detector no longer finds a listed face: say so, never guess
                self.report.skipped[name]["audit: listed face not found by the detector"] += len(lost)
        t1 = time.monotonic()
        self.log(f"grouping {len(self.bases)} base faces (perceptual hash, identities, photos) ...")
        groups = self.group()
        splits = self.split(groups)
        rows = self.place(staging, groups, splits)
        info = self.summary(rows, groups, t1 - t0, time.monotonic() - t1)
        (self.out / "dataset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return info

    def place(self, staging: Path, groups: dict[str, str], splits: dict[str, str]) -> list[dict[str, str]]:
        rows = []
        used: set[str] = set()
        for r in self.records:
            gid = groups[r.base]
            split = splits[gid]
            rel = f"{split}/{r.label}/{r.name}"
            n = 1
            while rel in used:  # two photos whose safe names collide
                n += 1
                rel = f"{split}/{r.label}/{Path(r.name).stem}_{n}.jpg"
            used.add(rel)
            dest = self.out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            (staging / r.staged).replace(dest)
            rows.append({"path": rel, "split": split, "label": r.label, "origin": r.origin, "source": r.source,
                         "group": gid, "base": r.base, "detail": r.detail})
        shutil.rmtree(staging, ignore_errors=True)
        rows.sort(key=lambda row: row["path"])
        with open(self.out / "index.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        return rows

    def summary(self, rows: list[dict[str, str]], groups: dict[str, str], t_read: float, t_split: float) -> dict[str, object]:
        counts: dict[str, dict[str, dict[str, int]]] = {s: {c: {} for c in ALL_CLASSES} for s in SPLITS}
        for row in rows:
            cell = counts[row["split"]][row["label"]]
            cell[row["origin"]] = cell.get(row["origin"], 0) + 1
        by_source: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
        for row in rows:
            cell = by_source.setdefault(row["split"], {}).setdefault(row["source"], {}).setdefault(row["label"], {})
            cell[row["origin"]] = cell.get(row["origin"], 0) + 1
        file_list = "\n".join(row["path"] for row in rows) + "\n"
        recipe = self.recipe
        return {
            "format": "masknet-dataset/1",
            "root": ".",
            "crop": {**self.crop.to_json(), "jpeg_quality": recipe.jpeg_quality,
                     "function": "edge.crop.crop_face"},
            "classes": list(ALL_CLASSES),
            "splits": list(SPLITS),
            "counts": counts,
            "counts_by_source": by_source,
            "relabelled": {src: {k: v for k, v in reasons.items() if k.startswith(("audit:", "labels CSV:"))}
                           for src, reasons in self.report.as_dict()["skipped"].items()
                           if any(k.startswith(("audit:", "labels CSV:")) for k in reasons)},
            "images": len(rows),
            "groups": len(set(groups.values())),
            "largest_groups": [{"group": g, "images": n} for g, n in Counter(r["group"] for r in rows).most_common(5)],
            "base_faces": len(self.bases),
            "report": self.report.as_dict(),
            "recipe": {"path": str(recipe.path) if recipe.path else None, "name": recipe.name, "settings": recipe.raw},
            "seed": recipe.seed,
            "code_version": code_version(),
            "file_list_sha256": hashlib.sha256(file_list.encode()).hexdigest(),
            "seconds": {"read_and_make": round(t_read, 1), "group_split_write": round(t_split, 1)},
            # only when the recipe pins splits, so an unpinned build's dataset.json is as before
            **({"split_pins": self.pin_stats} if self.pin_stats else {}),
        }


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw: object) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, unit: str, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the convert extra; a build without it still works
        return _NoBar()
    return tqdm(total=total, unit=unit, dynamic_ncols=True, mininterval=2.0, file=sys.stderr)


def counts_table(info: dict[str, object]) -> str:
    """The counts per class x split, real / recoloured / synthetic, and the Mask-net view."""
    counts: dict[str, dict[str, dict[str, int]]] = info["counts"]  # type: ignore[assignment]
    lines = []
    head = f"{'class':<22}" + "".join(f"{s:>28}" for s in SPLITS)
    lines.append(head)
    lines.append(f"{'':<22}" + "".join(f"{'total (real/recol/synth)':>28}" for _ in SPLITS))
    for c in ALL_CLASSES:
        cells = []
        for s in SPLITS:
            o = counts[s][c]
            total = sum(o.values())
            cells.append(f"{total:>7} ({o.get('real', 0)}/{o.get('recoloured', 0)}/{o.get('synthetic', 0)})")
        lines.append(f"{c:<22}" + "".join(f"{x:>28}" for x in cells))
    lines.append("")
    lines.append("Mask-net view (sub-types count as mask_incorrect):")
    for c in MASKNET_CLASSES:
        cells = []
        for s in SPLITS:
            tot = Counter()
            for cls in ALL_CLASSES:
                if masknet_label(cls) == c:
                    tot.update(counts[s][cls])
            cells.append(f"{sum(tot.values()):>7} ({tot.get('real', 0)}/{tot.get('recoloured', 0)}/{tot.get('synthetic', 0)})")
        lines.append(f"{c:<22}" + "".join(f"{x:>28}" for x in cells))
    lines.append("I-Mask-net sub-types: " + ", ".join(SUBTYPES))
    return "\n".join(lines)


def build(recipe: Recipe, out: Path, progress: bool = True) -> dict[str, object]:
    return Builder(recipe, out, progress).run()

