"""The output folder of a training run: what identifies it (`run.json`), and the checks
that keep `resume` from writing into a folder that is not this run."""

__all__ = []  # internal (the CLI's and train()'s machinery): no public API

import dataclasses
import json
import pathlib

RUN_FILE = "run.json"


def read_json(path, expected=dict):
    """The JSON content of `path` (None if missing); a ValueError naming the file when it
    is not valid JSON or not of the `expected` type."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): restore it or move it away.") from None
    if not isinstance(value, expected):
        raise ValueError(f"{path} should hold a JSON {expected.__name__}, found {type(value).__name__}: "
                         "restore it or move it away.")
    return value


def _flat(recipe_dict, prefix=""):
    flat = {}
    for key, value in recipe_dict.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def identity(recipe, data):
    """What must not change between a run and its resume: the recipe (a checkpoint's
    learning-rate schedule is fixed in steps) and the data's classes and image shape."""
    return {"recipe": dataclasses.asdict(recipe), "class_names": list(getattr(data, "class_names", None) or []),
            "image_shape": list(getattr(data, "image_shape", None) or [])}


def check_resumable(out, current):
    """Raises ValueError if `out` holds files but is not a training run, or is a run of
    another recipe or other data than `current` (see `identity`)."""
    out = pathlib.Path(out)
    if not out.exists() or not any(out.iterdir()):
        return
    stored = read_json(out / RUN_FILE)
    if stored is None:
        if not any((out / f"stage{n}").is_dir() for n in (1, 2)):
            raise ValueError(f"{out} is not a training run (no {RUN_FILE}, no stage1/ or stage2/) but holds "
                             "files: refusing to resume into it; choose an empty or new folder.")
        summary = read_json(out / "summary.json")
        stored = {"recipe": summary["recipe"]} if summary and "recipe" in summary else {}
    differences = []
    old, new = _flat(stored.get("recipe", {})), _flat(current["recipe"])
    for key in old.keys() & new.keys():
        if old[key] != new[key]:
            differences.append(f"{key} {old[key]!r} -> {new[key]!r}")
    if "image_shape" in stored and stored["image_shape"] != current["image_shape"]:
        differences.append(f"image_shape {stored['image_shape']} -> {current['image_shape']}")
    before, now = stored.get("class_names"), current["class_names"]
    if before is not None and before != now:
        if len(before) != len(now):
            differences.append(f"number of classes {len(before)} -> {len(now)}")
        else:
            i = next(i for i, (a, b) in enumerate(zip(before, now)) if a != b)
            differences.append(f"class {i} {before[i]!r} -> {now[i]!r}")
    if differences:
        raise ValueError(f"Cannot resume {out} with other settings than it was started with: "
                         + "; ".join(sorted(differences)) + ". Resume with the same ones, or use a new folder.")
