"""Recipes and source folders: labels come from folder or file names, and every bad input is a
one-line error or a counted skip."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.dataset.recipe import DEFAULT_RECIPE, load_recipe, parse_recipe
from convert.dataset.sources import list_source, mfn_label
from edge.cli import main
from edge.errors import ConfigError


def jpg(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((32, 32, 3), value, np.uint8))
    return path


def recipe_file(tmp_path: Path, sources: str, extra: str = "") -> Path:
    p = tmp_path / "r.toml"
    p.write_text(f'seed = 1\nroot = "{tmp_path}"\n{extra}\n' + textwrap.dedent(sources), encoding="utf-8")
    return p


def one_source(tmp_path: Path, body: str):
    return load_recipe(recipe_file(tmp_path, "[[source]]\n" + textwrap.dedent(body))).sources[0]


def test_class_folders_give_labels_and_identities(tmp_path):
    jpg(tmp_path / "d" / "no_mask" / "cdeb_0_0_anhu_0001.jpg")
    jpg(tmp_path / "d" / "no_mask" / "cdeb_1_0_anhu_0077.jpg")
    jpg(tmp_path / "d" / "mask" / "x.png")
    jpg(tmp_path / "d" / "mask" / "labels" / "x_gt.png")  # not a photo of this class
    spec = one_source(tmp_path, """
        name = "d"
        path = "d"
        ignore = ["labels"]
        group_patterns = ['^cdeb_\\d+_\\d+_([a-z]+)_\\d+$']
    """)
    items = list_source(spec)
    assert [(i.rel, i.label, i.identity) for i in items] == [
        ("mask/x.png", "mask", None),
        ("no_mask/cdeb_0_0_anhu_0001.jpg", "no_mask", "d:anhu"),
        ("no_mask/cdeb_1_0_anhu_0077.jpg", "no_mask", "d:anhu"),
    ]


def test_unknown_class_folder_is_a_one_line_error(tmp_path):
    jpg(tmp_path / "d" / "mask" / "a.jpg")
    jpg(tmp_path / "d" / "masked" / "b.jpg")  # typo: would silently mislabel
    spec = one_source(tmp_path, 'name = "d"\npath = "d"\n')
    with pytest.raises(ConfigError, match=r"masked .* not class ids") as exc:
        list_source(spec)
    assert "\n" not in str(exc.value)


def test_empty_and_missing_sources_are_errors(tmp_path):
    (tmp_path / "empty" / "mask").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no images"):
        list_source(one_source(tmp_path, 'name = "e"\npath = "empty"\n'))
    with pytest.raises(ConfigError, match="does not exist"):
        list_source(one_source(tmp_path, 'name = "m"\npath = "nowhere"\n'))


def test_maskedfacenet_layout_reads_the_wearing_state_from_the_name(tmp_path):
    for name in ("00001_Mask.jpg", "00002_Mask_Chin.jpg", "00003_Mask_Mouth_Chin.jpg", "00004_Mask_Nose_Mouth.jpg", "00005.jpg"):
        jpg(tmp_path / "mfn" / "IMFD" / "00000" / name)
    skipped: Counter[str] = Counter()
    items = list_source(one_source(tmp_path, 'name = "mfn"\npath = "mfn"\nlayout = "maskedfacenet"\n'), skipped)
    assert [i.label for i in items] == ["mask", "mask_over_chin", "mask_over_mouth_chin", "mask_over_nose_mouth"]
    assert skipped == {"MaskedFace-Net name without a wearing state": 1}
    assert mfn_label("x_mask_mouth_chin.JPG") == "mask_over_mouth_chin"


def test_limit_takes_a_stable_subset(tmp_path):
    for i in range(20):
        jpg(tmp_path / "d" / "mask" / f"{i:02d}.jpg")
    spec = one_source(tmp_path, 'name = "d"\npath = "d"\nlimit = 5\n')
    first = [i.rel for i in list_source(spec)]
    assert len(first) == 5 and first == [i.rel for i in list_source(spec)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('name = "a"\npath = "a"\nlayout = "folders"\n', "layout 'folders' is unknown"),
        ('name = "a"\npath = "a"\nlayout = "unlabelled"\n', "needs label"),
        ('name = "a"\npath = "a"\nlayout = "unlabelled"\nlabel = "masked"\n', "not a class id"),
        ('name = "a"\npath = "a"\nfaces = "most"\n', "faces 'most' is unknown"),
        ('name = "a"\npath = "a"\ncolour = 1\n', "unknown setting"),
        ('name = "a"\npath = "a"\nrecolour = 2\n', "between 0 and 1"),
        ('name = "a"\npath = "a"\ngroup_patterns = ["no_group"]\n', "capture group"),
        ('name = "a"\npath = "a"\nsynthesize = ["mask"]\n', "templates"),
        ('path = "a"\n', "needs a name"),
    ],
)
def test_recipe_mistakes_are_named(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(recipe_file(tmp_path, "[[source]]\n" + body))


def test_recipe_without_sources_or_not_toml(tmp_path):
    with pytest.raises(ConfigError, match="no \\[\\[source\\]\\]"):
        parse_recipe({"seed": 1})
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="split.*summing to 1"):
        parse_recipe({"split": {"fractions": [0.5, 0.1, 0.1]}, "source": [{"name": "a", "path": "a"}]})


def test_default_recipe_loads():
    recipe = load_recipe(DEFAULT_RECIPE)
    assert [s.name for s in recipe.sources] == ["real", "diverse", "maskedfacenet", "maskedfacenet_seg", "rwmfd"]
    audit = next(s for s in recipe.sources if s.name == "rwmfd").audit_csv
    assert audit is not None and audit.is_file()  # the committed by-eye audit travels with the code
    assert recipe.size == 224 and recipe.split == (0.8, 0.1, 0.1)
    assert recipe.margin is None  # the door's crop margin, not a copy of it


def test_cli_reports_a_bad_source_in_one_line(tmp_path, capsys):
    jpg(tmp_path / "d" / "maks" / "a.jpg")
    r = recipe_file(tmp_path, '[[source]]\nname = "d"\npath = "d"\n')
    code = main(["dataset", "build", "--recipe", str(r), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("masknet dataset: error: source 'd': folder(s) maks in ")


def test_maskedfacenet_example_recipe_reads_a_downloaded_layout(tmp_path):
    from convert.dataset.recipe import REPO_ROOT

    for rel in ("CMFD/00000/00001_Mask.jpg", "IMFD/00000/00001_Mask_Chin.jpg", "IMFD/00000/00002_Mask_Nose_Mouth.jpg", "FFHQ/00000/00001.png"):
        jpg(tmp_path / rel)
    recipe = load_recipe(REPO_ROOT / "convert" / "recipes" / "maskedfacenet.toml", root=tmp_path)
    items = [i for s in recipe.sources for i in list_source(s)]
    assert [(i.label, i.identity) for i in items] == [
        ("mask", "ffhq:00001"), ("mask_over_chin", "ffhq:00001"), ("mask_over_nose_mouth", "ffhq:00002"), ("no_mask", "ffhq:00001"),
    ]


def test_labels_csv_relabels_drops_and_keeps_unlisted_photos(tmp_path):
    for name in ("jh_IMG_7037", "jh_IMG_7038", "jh_IMG_7040", "jh_IMG_7090", "jh_other"):
        jpg(tmp_path / "d" / "mask_incorrect" / f"{name}.jpg")
    (tmp_path / "labels.csv").write_text(
        "file,wear,class_id\n"
        "d/mask_incorrect/jh_IMG_7037.jpg,mouth_chin,mask_over_mouth_chin\n"
        "d/mask_incorrect/jh_IMG_7038.jpg,unclear,\n"
        "d/mask_incorrect/jh_IMG_7040.jpg,correct,mask\n"
        "d/mask_incorrect/jh_IMG_7090.jpg,chin,mask_over_chin\n", encoding="utf-8")
    spec = one_source(tmp_path, """
        name = "d"
        path = "d"
        labels_csv = "labels.csv"
        burst_patterns = ['^(jh_IMG_)(\\d+)$']
        burst_gap = 3
    """)
    skipped = Counter()
    items = {i.rel.split("/")[1]: i for i in list_source(spec, skipped)}
    assert {k: v.label for k, v in items.items()} == {
        "jh_IMG_7037.jpg": "mask_over_mouth_chin", "jh_IMG_7040.jpg": "mask",
        "jh_IMG_7090.jpg": "mask_over_chin", "jh_other.jpg": "mask_incorrect"}
    assert skipped["labels CSV: mask_incorrect photo left out (no class_id)"] == 1
    assert skipped["labels CSV: mask_incorrect -> mask"] == 1
    # 7037 and 7040 are one burst (gap 3, 7038 left out between them), 7090 another, jh_other none
    assert items["jh_IMG_7037.jpg"].identity == items["jh_IMG_7040.jpg"].identity is not None
    assert items["jh_IMG_7090.jpg"].identity not in (None, items["jh_IMG_7037.jpg"].identity)
    assert items["jh_other.jpg"].identity is None


def test_labels_csv_with_a_bad_class_or_missing_is_one_line(tmp_path):
    jpg(tmp_path / "d" / "mask" / "a.jpg")
    (tmp_path / "labels.csv").write_text("file,class_id\nd/mask/a.jpg,masked\n", encoding="utf-8")
    spec = one_source(tmp_path, 'name = "d"\npath = "d"\nlabels_csv = "labels.csv"\n')
    with pytest.raises(ConfigError, match="line 2: class_id 'masked'"):
        list_source(spec)
    spec = one_source(tmp_path, 'name = "d"\npath = "d"\nlabels_csv = "nope.csv"\n')
    with pytest.raises(ConfigError, match="labels_csv .*nope.csv not found"):
        list_source(spec)
