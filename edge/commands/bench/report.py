"""What ``masknet bench`` prints: the ratios the runs allow, their spread over rounds, the tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.commands.bench.measure import STAT_FIELDS
from edge.timing import DETECTOR_INVOKE, IMASKNET_INVOKE, MASKNET_INVOKE, STAGES


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def stage_table(block: dict[str, Any], markdown: bool) -> str:
    rows = []
    for name in STAGES:
        s = block["stages"][name]
        rows.append(
            [
                name,
                *(_fmt(s[k]) for k in STAT_FIELDS[:-1]),
                str(s["count"]),
                _fmt(block["per_frame_ms"][name]),
            ]
        )
    f = block["frame"]
    rows.append(
        [
            "frame (end to end)",
            *(_fmt(f[k]) for k in STAT_FIELDS[:-1]),
            str(f["count"]),
            _fmt(f["mean_ms"]),
        ]
    )
    headers = ["stage", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "count", "ms/frame"]
    return _table(headers, rows, markdown)


def comparison_table(runs: list[dict[str, Any]], markdown: bool) -> str:
    rows = []
    for r in runs:
        rows.append(
            [
                r["variant"],
                str(r["threads"]),
                "-" if r["faces"] is None else str(r["faces"]),
                str(r["input_size"]),
                _fmt(r["frame"]["mean_ms"]),
                _fmt(r["frame"]["p95_ms"]),
                _fmt(r["frame"]["fps"], 1),
                _fmt(r["stages"][DETECTOR_INVOKE]["mean_ms"]),
                _fmt(r["stages"][MASKNET_INVOKE]["mean_ms"]),
                _fmt(r["stages"][IMASKNET_INVOKE]["mean_ms"]),
                _fmt(r["overhead_ratio"]),
            ]
        )
    headers = [
        "models",
        "threads",
        "faces",
        "input",
        "frame ms",
        "p95 ms",
        "FPS",
        "detector ms",
        "Mask-net ms",
        "I-Mask-net ms",
        "frame/invokes",
    ]
    return _table(headers, rows, markdown)


def float_twin(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The float run measured like the first run (same threads, faces and input size), if any."""
    main = runs[0]
    return next(
        (
            r
            for r in runs
            if r["variant"] == "float"
            and r["threads"] == main["threads"]
            and r["faces"] == main["faces"]
            and r["input_size"] == main["input_size"]
        ),
        None,
    )


def ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the issue asks about, from the runs that allow them."""
    main = runs[0]
    out: dict[str, Any] = {"overhead": main["overhead_ratio"]}
    same = [
        r for r in runs if r["threads"] == main["threads"] and r["input_size"] == main["input_size"]
    ]
    flt = float_twin(runs)
    if flt is not None:
        a, b = main["stages"][MASKNET_INVOKE]["mean_ms"], flt["stages"][MASKNET_INVOKE]["mean_ms"]
        out["int8_vs_float_masknet_invoke"] = a / b if a and b else None
    by_faces = {r["faces"]: r for r in same if r["variant"] == main["variant"] and r["faces"]}
    if 1 in by_faces and len(by_faces) > 1:
        one = by_faces[1]["frame"]["mean_ms"]
        out["frame_vs_one_face"] = {
            str(k): r["frame"]["mean_ms"] / one for k, r in sorted(by_faces.items()) if k != 1
        }
        # a straight line through 1 face and the most faces: what a person costs, what the
        # frame costs anyway, so a user can work out the frame rate for any crowd
        most = max(by_faces)
        per_face = (by_faces[most]["frame"]["mean_ms"] - one) / (most - 1)
        out["cost_split_ms"] = {"per_face": per_face, "per_frame": one - per_face}
    return out


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif v is not None:
            out[f"{prefix}{k}"] = float(v)
    return out


def spread(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """min / median / max of every ratio over the rounds ({"frame_vs_one_face.4": {...}})."""
    flat = [_flat(r) for r in rounds]
    keys = [k for k in flat[0] if all(k in f for f in flat)]
    return {
        k: {
            "min": min(f[k] for f in flat),
            "median": float(np.median([f[k] for f in flat])),
            "max": max(f[k] for f in flat),
        }
        for k in keys
    }


def rounds_table(rounds: list[dict[str, Any]], markdown: bool) -> str:
    """One row of ratios per round of --repeat."""
    cols: list[tuple[str, str, int]] = [("frame/invokes", "overhead", 3)]
    cols += [
        (f"{k} faces / 1 face", f"frame_vs_one_face.{k}", 2) for k in rounds[0].get("frame_vs_one_face", {})
    ]
    if "cost_split_ms" in rounds[0]:
        cols += [
            ("each face adds ms", "cost_split_ms.per_face", 2),
            ("frame's own work ms", "cost_split_ms.per_frame", 2),
        ]
    if "int8_vs_float_masknet_invoke" in rounds[0]:
        cols.append(("int8/float Mask-net", "int8_vs_float_masknet_invoke", 2))
    rows = []
    for i, r in enumerate(rounds, 1):
        flat = _flat(r)
        rows.append([str(i), *(_fmt(flat.get(key), digits) for _, key, digits in cols)])
    return _table(["round", *(c[0] for c in cols)], rows, markdown)


def render(result: dict[str, Any], markdown: bool) -> str:
    h = result["header"]
    def describe(m: dict[str, Any]) -> str:
        if "reads" in m:
            return f", reads {m['reads']}"
        return f", {m['input_size']} px" if "input_size" in m else ""

    models = ", ".join(f"{m['file']} ({m['sha256'][:12]}{describe(m)})" for m in h["models"])
    lines = [
        ("### " if markdown else "") + "masknet bench",
        "",
        f"- CPU: {h['cpu']} ({h['cores']} cores), {h['machine']}, Python {h['python']}",
        f"- runtime: {h['runtime']} {h['runtime_version']}, {h['threads']} thread(s) per model",
        f"- models: {models}",
        f"- input: {h['input']}; {result['frames']} frames timed after {h['warmup']} warm-up frames; "
        f"{h['cascade']}",
        f"- faces detected per frame: {result['faces_detected_mean']:.2f}; peak RSS {result['rss_peak_mb']:.1f} MB "
        f"(this process, all runs{'' if len(result['runs']) == 1 else '; per run in the JSON'})",
        "",
    ]
    for r in result["runs"]:
        if r["faces"] and r["faces_detected_mean"] < r["faces"] - 0.01:
            lines.append(
                f"note: the detector found {r['faces_detected_mean']:.2f} of the {r['faces']} pasted faces per "
                "frame, so the classifier stages ran less often than asked (fewer --faces fit better)"
            )
    if not markdown:
        lines = [line[2:] if line.startswith("- ") else line for line in lines]
    lines.append(stage_table(result, markdown))
    r = result["ratios"]
    lines.append("")
    lines.append(
        f"frame / (detector + Mask-net + I-Mask-net invokes) = {_fmt(r['overhead'])}; "
        f"{result['frame']['fps']:.1f} FPS"
    )
    if "int8_vs_float_masknet_invoke" in r:
        lines.append(f"int8 / float Mask-net invoke = {_fmt(r['int8_vs_float_masknet_invoke'])}")
    for k, v in r.get("frame_vs_one_face", {}).items():
        lines.append(f"frame time with {k} faces / with 1 face = {_fmt(v)}")
    if "cost_split_ms" in r:
        split = r["cost_split_ms"]
        lines.append(
            f"each face adds {split['per_face']:.2f} ms to a frame whose own work is {split['per_frame']:.2f} ms "
            "(classifiers, crop and tracking per face; detector, decode and tracking per frame)"
        )
    if len(result["runs"]) > 1:
        lines += ["", comparison_table(result["runs"], markdown)]
    rounds = result.get("rounds", [])
    if len(rounds) > 1:
        lines += [
            "",
            f"{len(rounds)} rounds, each running every combination in turn (the tables above are round 1):",
            "",
            rounds_table(rounds, markdown),
            "",
        ]
        headline = [("overhead", "frame / invokes")] + [
            (f"frame_vs_one_face.{k}", f"{k} faces / 1 face") for k in rounds[0].get("frame_vs_one_face", {})
        ]
        for key, label in headline:
            sp = result["ratios_spread"].get(key)
            if sp:
                lines.append(
                    f"{label}: median {sp['median']:.3f}, min {sp['min']:.3f}, max {sp['max']:.3f}"
                )
    return "\n".join(lines)
