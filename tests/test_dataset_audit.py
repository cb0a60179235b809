"""The per-face audit CSV: decisions found again by box, bad rows refused in one line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from convert.dataset.audit import Decision, load_audit, write_audit
from convert.dataset.build import is_grey
from edge.classes import ALL_CLASSES
from edge.errors import ConfigError
from edge.paths import repo_root


def test_audit_round_trip_and_lookup_by_overlap(tmp_path: Path) -> None:
    path = tmp_path / "audit.csv"
    write_audit(path, [Decision("a.jpg", (10, 10, 50, 50), "no_mask", "background face"),
                       Decision("a.jpg", (100, 10, 140, 50), "drop", "an ear"),
                       Decision("b.jpg", (0, 0, 30, 30), "mask", "mask worn")])
    audit = load_audit(path)
    assert len(audit) == 3
    # the detector's box of a rebuild differs by a pixel or two: still the same face
    assert audit.decision("a.jpg", np.array([11, 9, 51, 50])).label == "no_mask"
    assert audit.decision("a.jpg", np.array([101, 10, 139, 52])).label == "drop"
    assert audit.decision("a.jpg", np.array([60, 60, 90, 90])) is None  # a face nobody listed
    assert audit.decision("c.jpg", np.array([0, 0, 30, 30])) is None
    assert [d.file for d in audit.unused()] == ["b.jpg"]  # listed, never found again: reported


@pytest.mark.parametrize("row, message", [
    ("a.jpg,1,1,5,5,masked,x", "label 'masked' must be a class id"),
    ("a.jpg,1,1,one,5,drop,x", "must be numbers"),
    ("a.jpg,5,1,1,5,drop,x", "x1 > x0"),
])
def test_bad_audit_rows_are_one_line_errors(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "audit.csv"
    path.write_text("file,x0,y0,x1,y1,label,reason\n" + row + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"line 2: .*{message}"):
        load_audit(path)
    (tmp_path / "short.csv").write_text("file,label\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="lacks column"):
        load_audit(tmp_path / "short.csv")


def test_builder_applies_the_audit_to_the_faces_it_finds(tmp_path: Path) -> None:
    from convert.dataset.build import Builder
    from convert.dataset.faces import FoundFace
    from convert.dataset.sources import SourceItem
    from edge.detector import Face

    path = tmp_path / "audit.csv"
    write_audit(path, [Decision("p.jpg", (10, 10, 50, 50), "no_mask", "bare"),
                       Decision("p.jpg", (100, 10, 140, 50), "drop", "not a face")])
    faces = [FoundFace(Face(box=np.array(b, np.float32), score=0.9), "detected")
             for b in ((10, 10, 50, 50), (100, 10, 140, 50), (200, 10, 240, 50))]
    skipped: Counter[str] = Counter()
    item = SourceItem(tmp_path / "p.jpg", "mask", "s", "p.jpg")
    kept, labels = Builder._audited(None, load_audit(path), item, faces, ["mask"] * 3, skipped)  # type: ignore[arg-type]
    assert labels == ["no_mask", "mask"] and len(kept) == 2
    assert skipped == Counter({"audit: mask -> no_mask": 1, "audit: mask face dropped": 1})


def test_grey_photos_are_told_from_colour_ones() -> None:
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 255, (80, 80, 1), dtype=np.uint8), 3, axis=2)
    colour = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
    assert is_grey(grey) and not is_grey(colour)
    assert is_grey(np.clip(grey.astype(int) + rng.integers(-2, 3, grey.shape), 0, 255).astype(np.uint8))  # JPEG chroma noise


@pytest.mark.parametrize("name", ["rwmfd_audit.csv", "diverse_audit.csv", "real_subtype_audit.csv"])
def test_the_committed_audits_load_and_give_a_reason_for_every_decision(name: str) -> None:
    audit = load_audit(repo_root() / "convert" / "recipes" / name)
    decisions = [d for ds in audit.by_file.values() for d in ds]
    assert decisions
    assert all(d.label in (*ALL_CLASSES, "drop") and d.reason.strip() for d in decisions)
