"""End-to-end builds: labels, groups and splits as the models engineer reads them, and the
identity-disjointness promise (no base face, identity or near-duplicate in two splits)."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.dataset.build import INDEX_COLUMNS, BaseFace, Builder, Record
from convert.dataset.calibration import select
from convert.dataset.phash import near_duplicate_pairs, phash, phash_pair
from convert.dataset.recipe import load_recipe, parse_recipe
from convert.dataset.split import assign_splits, pinned_split, read_split_pins
from edge.errors import ConfigError
from edge.paths import DETECTOR_MODEL, LANDMARK_MODEL, models_dir

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def need_models() -> None:
    for name in (DETECTOR_MODEL, LANDMARK_MODEL):
        if not (models_dir() / name).is_file():
            pytest.skip(f"{name} not installed (./install.sh)")


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "index.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def assert_identity_disjoint(rows: list[dict[str, str]], out: Path | None = None, max_distance: int = 4) -> None:
    """No group, base face or near-duplicate real crop in two splits."""
    for key in ("group", "base"):
        splits = defaultdict(set)
        for r in rows:
            splits[r[key]].add(r["split"])
        straddling = {k: v for k, v in splits.items() if len(v) > 1}
        assert not straddling, f"{key}s in several splits: {list(straddling.items())[:3]}"
    if out is None:
        return
    real = [r for r in rows if r["origin"] != "synthetic" or r["source"] != "real"]
    hashes, mirrors = [], []
    for r in real:
        img = cv2.cvtColor(cv2.imread(str(out / r["path"])), cv2.COLOR_BGR2RGB)
        h, m = phash_pair(img)
        hashes.append(h)
        mirrors.append(m)
    # the build merges at distance 6 on the crops before JPEG; re-decoded crops drift a bit or
    # two, so a cross-split pair is looked for a little tighter than that
    for i, j in near_duplicate_pairs(hashes, mirrors, max_distance):
        assert real[i]["split"] == real[j]["split"], (real[i]["path"], real[j]["path"])


# -- split and grouping logic, without images ---------------------------------------------


def test_assign_splits_is_deterministic_and_follows_the_fractions():
    groups = {f"g{i}": ("s/mask" if i % 2 else "s/no_mask", 1 + i % 3) for i in range(600)}
    a = assign_splits(groups, (0.8, 0.1, 0.1), seed=3)
    assert a == assign_splits(dict(reversed(list(groups.items()))), (0.8, 0.1, 0.1), seed=3)
    assert a != assign_splits(groups, (0.8, 0.1, 0.1), seed=4)
    for stratum in ("s/mask", "s/no_mask"):
        sizes = defaultdict(int)
        for g, (s, n) in groups.items():
            if s == stratum:
                sizes[a[g]] += n
        total = sum(sizes.values())
        assert abs(sizes["train"] / total - 0.8) < 0.01 and abs(sizes["test"] / total - 0.1) < 0.01


def test_one_big_identity_goes_to_train_not_to_test():
    groups = {"anhu": ("real/no_mask", 230), **{f"p{i}": ("real/no_mask", 1) for i in range(1600)}}
    assert assign_splits(groups, (0.8, 0.1, 0.1), seed=0)["anhu"] == "train"


def _builder_with(bases: list[BaseFace], tmp_path: Path) -> Builder:
    need_models()
    recipe = parse_recipe({"seed": 5, "source": [{"name": "s", "path": str(tmp_path)}]})
    b = Builder(recipe, tmp_path / "out", progress=False)
    b.bases = bases
    for base in bases:  # each base face has a real crop, unmasked ones also 4 synthetic ones
        b.records.append(Record("x", "x", base.label, "real", base.source, base.base))
        if base.label == "no_mask":
            b.records += [Record("x", "x", "mask", "synthetic", base.source, base.base)] * 4
    return b


def test_identities_photos_and_near_duplicates_share_a_split(tmp_path):
    rng = np.random.default_rng(0)
    bases = []
    for i in range(400):
        h = int(rng.integers(0, 2**63))
        bases.append(BaseFace(f"s/p{i}.jpg#0", "s", "no_mask" if i % 2 else "mask", f"s/p{i}.jpg", None, (h, h ^ 0xFF)))
    # three copies of p0: 3 bits flipped, mirrored, and one with p0's identity by name
    h0, m0 = bases[0].hashes
    bases.append(BaseFace("s/copy.jpg#0", "s", "mask", "s/copy.jpg", None, (h0 ^ 0b111, 5)))
    bases.append(BaseFace("s/mirror.jpg#0", "s", "mask", "s/mirror.jpg", None, (m0, h0)))
    bases[0].identity = "s:anna"
    bases.append(BaseFace("s/anna2.jpg#0", "s", "no_mask", "s/anna2.jpg", "s:anna", (12345, 54321)))
    # a second face of one scene photo
    bases.append(BaseFace("s/p7.jpg#1", "s", "mask", "s/p7.jpg", None, (99, 98)))
    b = _builder_with(bases, tmp_path)
    groups = b.group()
    assert len({groups[k] for k in ("s/p0.jpg#0", "s/copy.jpg#0", "s/mirror.jpg#0", "s/anna2.jpg#0")}) == 1
    assert groups["s/p7.jpg#0"] == groups["s/p7.jpg#1"]
    assert groups["s/p1.jpg#0"] != groups["s/p2.jpg#0"]
    splits = b.split(groups)
    rows = [{"group": groups[r.base], "base": r.base, "split": splits[groups[r.base]]} for r in b.records]
    assert_identity_disjoint(rows)
    assert {r["split"] for r in rows} == {"train", "val", "test"}


def test_pinned_splits_survive_a_relabel_and_new_photos(tmp_path):
    """An audit that moves one face to another class, or new photos, must not re-draw the split of
    the photos an earlier build (and the models trained on it) already placed."""
    import dataclasses

    rng = np.random.default_rng(1)
    bases = [BaseFace(f"s/p{i}.jpg#0", "s", "no_mask" if i % 2 else "mask", f"s/p{i}.jpg", None,
                      (int(rng.integers(0, 2**63)), int(rng.integers(0, 2**63)))) for i in range(300)]
    b = _builder_with(bases, tmp_path)
    groups = b.group()
    drawn = b.split(groups)
    first = {base.base: drawn[groups[base.base]] for base in bases}
    pins = tmp_path / "pins.csv"
    pins.write_text("base,split\n" + "".join(f"{k},{v}\n" for k, v in first.items()))
    # without pins, one relabelled face re-draws its strata: some other photo changes split
    relabelled = [dataclasses.replace(bases[0], label="no_mask")] + bases[1:]
    redrawn = _builder_with(relabelled, tmp_path / "a")
    g = redrawn.group()
    assert any(redrawn.split(g)[g[k]] != v for k, v in first.items())
    # with them, every pinned photo keeps its split, and 40 new photos are drawn into all three
    new = [BaseFace(f"s/new{i}.jpg#0", "s", "mask", f"s/new{i}.jpg", None,
                    (int(rng.integers(0, 2**63)), int(rng.integers(0, 2**63)))) for i in range(40)]
    pinned = _builder_with(relabelled + new, tmp_path / "b")
    pinned.recipe = dataclasses.replace(pinned.recipe, split_pins=pins)
    g = pinned.group()
    splits = pinned.split(g)
    assert all(splits[g[k]] == v for k, v in first.items())
    assert {splits[g[f"s/new{i}.jpg#0"]] for i in range(40)} == {"train", "val", "test"}
    assert pinned.pin_stats is not None and pinned.pin_stats["drawn_groups"] == 40
    # a group joining photos pinned to different splits goes to the earliest: never to val or test
    # a photo that was trained on
    assert pinned_split(["a", "b"], {"a": "test", "b": "train"}) == "train"
    assert pinned_split(["c"], {"a": "test"}) is None


@pytest.mark.parametrize("text, message", [
    ("base,split\nx.jpg#0,holdout\n", "line 2: split 'holdout'"),
    ("base,split\nx.jpg#0,train\nx.jpg#0,test\n", "pinned to both train and test"),
    ("file,fold\nx,1\n", "'base' and 'split' columns"),
])
def test_bad_split_pins_are_one_clear_error(tmp_path, text, message):
    pins = tmp_path / "pins.csv"
    pins.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_split_pins(pins)


def test_a_missing_pins_file_is_named_in_the_recipe_error(tmp_path):
    with pytest.raises(ConfigError, match=r"\[split\]: pins = 'nowhere.csv'.*not found"):
        parse_recipe({"split": {"pins": "nowhere.csv"}, "source": [{"name": "s", "path": str(tmp_path)}]},
                     path=tmp_path / "r.toml")


# -- a real build on skimage's astronaut ----------------------------------------------------


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    need_models()
    skimage_data = pytest.importorskip("skimage.data")
    from test_dataset_synth import write_templates

    from convert.dataset.synth import draw_mask, load_templates
    from edge.detector import BlazeFaceDetector
    from edge.face_mesh import FaceLandmarker

    root = tmp_path_factory.mktemp("photos")
    out = root / "out"
    face = skimage_data.astronaut()
    templates = write_templates(root / "masks")
    d = root / "people"
    for sub in ("no_mask", "mask", "mask_incorrect"):
        (d / sub).mkdir(parents=True)

    def save(path: Path, rgb: np.ndarray) -> None:
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    save(d / "no_mask" / "astro.jpg", face)
    save(d / "no_mask" / "astro_brighter.jpg", np.clip(face.astype(int) + 25, 0, 255).astype(np.uint8))
    save(d / "no_mask" / "astro_mirrored.jpg", face[:, ::-1])
    det = BlazeFaceDetector().detect(face)[0]
    lm = FaceLandmarker().landmarks(face, det)
    masked = draw_mask(face, lm, "mask", load_templates(templates), np.random.default_rng(0)).image
    save(d / "mask" / "astro_masked.jpg", masked)
    (d / "mask" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    save(d / "mask" / "empty_wall.jpg", np.full((300, 300, 3), 200, np.uint8))
    save(d / "mask_incorrect" / "tight.jpg", cv2.resize(face[60:200, 160:290], (120, 120)))
    # a tight crop the detector cannot make out (too blurred): used whole, and counted
    save(d / "mask_incorrect" / "blurred.jpg", cv2.GaussianBlur(cv2.resize(face[60:200, 160:290], (90, 90)), (0, 0), 6))
    (root / "r.toml").write_text(
        f"""
        seed = 7
        root = "{root}"
        [synthetic]
        templates = "masks"
        [[source]]
        name = "people"
        path = "people"
        faces = "dominant"
        tight_fallback = 100
        recolour = 1.0
        synthesize = ["mask", "mask_over_nose_mouth", "mask_over_mouth_chin", "mask_over_chin"]
        """,
        encoding="utf-8",
    )
    recipe = load_recipe(root / "r.toml")
    info = Builder(recipe, out, progress=False).run()
    return out, info


def test_build_writes_the_contract(small_build):
    out, info = small_build
    rows = read_rows(out)
    assert list(rows[0]) == list(INDEX_COLUMNS)
    for r in rows:
        img = cv2.imread(str(out / r["path"]))
        assert img.shape == (224, 224, 3)
        assert r["path"].startswith(f"{r['split']}/{r['label']}/")
    on_disk = sorted(str(p.relative_to(out)) for p in out.glob("*/*/*.jpg"))
    assert on_disk == sorted(r["path"] for r in rows)
    listing = "\n".join(sorted(r["path"] for r in rows)) + "\n"
    assert info["file_list_sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert json.loads((out / "dataset.json").read_text())["counts"] == info["counts"]
    total = sum(n for split in info["counts"].values() for cls in split.values() for n in cls.values())
    assert total == len(rows)


def test_every_unmasked_face_yields_four_wearing_states_in_its_group(small_build):
    out, _ = small_build
    rows = read_rows(out)
    by_base = defaultdict(list)
    for r in rows:
        by_base[r["base"]].append(r)
    base = by_base["people/no_mask/astro.jpg#0"]
    assert sorted(r["label"] for r in base if r["origin"] == "synthetic") == [
        "mask", "mask_over_chin", "mask_over_mouth_chin", "mask_over_nose_mouth"
    ]
    assert len({r["group"] for r in base}) == 1 and len({r["split"] for r in base}) == 1


def test_near_duplicates_merge_and_never_straddle_splits(small_build):
    out, _ = small_build
    rows = read_rows(out)
    group = {r["base"]: r["group"] for r in rows}
    # brightened and mirrored copies of one photo are one group
    assert group["people/no_mask/astro.jpg#0"] == group["people/no_mask/astro_brighter.jpg#0"] == group["people/no_mask/astro_mirrored.jpg#0"]
    assert_identity_disjoint(rows, out)


def test_bad_photos_are_counted_not_fatal(small_build):
    out, info = small_build
    skipped = info["report"]["skipped"]
    assert skipped["people/mask"]["unreadable image"] == 1
    assert skipped["people/mask"]["no face found"] == 1
    assert skipped["people/mask_incorrect"]["no face: used the whole photo (tight crop)"] == 1
    assert info["report"]["photos_read"]["people/mask"] == 3
    origins = {r["origin"] for r in read_rows(out) if r["label"] == "mask"}
    assert origins == {"real", "recoloured", "synthetic"}


def test_rebuilding_gives_the_same_files(small_build, tmp_path):
    out, info = small_build
    recipe = load_recipe(Path(out).parent / "r.toml")
    again = Builder(recipe, tmp_path / "again", progress=False).run()
    assert again["file_list_sha256"] == info["file_list_sha256"]
    assert again["counts"] == info["counts"]


def test_out_folder_with_foreign_files_is_refused(tmp_path):
    need_models()
    from edge.errors import ConfigError

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("precious")
    recipe = parse_recipe({"source": [{"name": "s", "path": str(tmp_path)}]})
    with pytest.raises(ConfigError, match="not empty"):
        Builder(recipe, tmp_path / "out", progress=False).prepare_out()
    assert (tmp_path / "out" / "thesis.tex").read_text() == "precious"


def test_calibration_selection_is_stratified_and_stable():
    rows = []
    for label, origin, n in (("mask", "real", 900), ("mask", "synthetic", 500), ("no_mask", "real", 700),
                             ("mask_over_chin", "synthetic", 600), ("mask_incorrect", "real", 40)):
        rows += [{"path": f"train/{label}/{origin}_{i}.jpg", "split": "train", "label": label, "origin": origin} for i in range(n)]
    rows += [{"path": "val/mask/v.jpg", "split": "val", "label": "mask", "origin": "real"}]
    picked = select(rows, 300, seed=0)
    assert len(picked) == 300 and picked == select(rows, 300, seed=0)
    assert all(p.startswith("train/") for p in picked)
    per = defaultdict(int)
    for p in picked:
        per[tuple(p.split("/")[1:2]) + (p.split("/")[2].split("_")[0],)] += 1
    assert per[("mask_incorrect", "real")] == 40  # a small stratum gives all it has
    assert min(per.values()) >= 40 and max(per.values()) - min(v for k, v in per.items() if k[0] != "mask_incorrect") <= 1


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "real").is_dir(), reason="../shared/data absent")
def test_shared_data_build_is_identity_disjoint(tmp_path):
    """cdeb's *_copy_* files and named people, jh bursts: a sample build keeps them together."""
    need_models()
    from dataclasses import replace

    from convert.dataset.recipe import DEFAULT_RECIPE

    recipe = load_recipe(DEFAULT_RECIPE)
    real = replace(recipe.sources[0], limit=150, synthesize=())
    recipe = replace(recipe, sources=(real,))
    Builder(recipe, tmp_path / "out", progress=False).run()
    rows = read_rows(tmp_path / "out")
    assert len(rows) > 300
    assert_identity_disjoint(rows, tmp_path / "out")
    # the named cdeb identities (cdeb_<0|1>_0_<person>_<n>) are single groups
    person_groups = defaultdict(set)
    for r in rows:
        stem = Path(r["base"].split("#")[0]).stem
        parts = stem.split("_")
        if stem.startswith("cdeb_") and len(parts) == 5 and parts[3].isalpha():
            person_groups[parts[3]].add(r["group"])
    assert person_groups and all(len(g) == 1 for g in person_groups.values())


def test_phash_sees_resaves_and_mirrors_but_not_other_pictures():
    skimage_data = pytest.importorskip("skimage.data")
    a = skimage_data.astronaut()
    resaved = cv2.imdecode(cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_UNCHANGED)
    small = cv2.resize(a, (128, 128), interpolation=cv2.INTER_AREA)
    other = skimage_data.coffee()
    h = phash(a)
    assert (h ^ phash(resaved)).bit_count() <= 4
    assert (h ^ phash(small)).bit_count() <= 4
    assert (h ^ phash_pair(a[:, ::-1])[1]).bit_count() == 0
    assert (h ^ phash(other)).bit_count() > 16
