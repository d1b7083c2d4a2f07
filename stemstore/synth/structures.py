"""Multitrack structures (which stems, instruments and raw tracks) from real MedleyDB metadata."""

from __future__ import annotations


import json
from importlib import resources
from pathlib import Path


from stemstore.store.connection import DEFAULT_GROUPS
from stemstore.corpus.medleydb import METADATA_SUFFIX, read_metadata


#: Instrument label -> group name.
INSTRUMENT_GROUP: dict[str, str] = {
    label: group for group, labels in DEFAULT_GROUPS.items() for label in labels
}

STRUCTURES_FILE = "medleydb_structures.json"


def derive_structures(metadata_dir: Path | str) -> list[dict]:
    """The multitrack structures of MedleyDB, restricted to the default instrument groups.

    Reads every ``*_METADATA.yaml`` in ``metadata_dir`` (sorted by file name) and returns, for
    each multitrack with at least one stem in :data:`DEFAULT_GROUPS`::

        {"name": "<Artist>_<Title>", "genre": ..., "stems": [
            {"instrument": "electric bass", "component": "bass", "n_raw": 2}, ...]}

    A stem whose raw tracks carry other labels than its own also lists them all, in order,
    as ``"raw_instruments"`` (see :func:`raw_instruments`).

    Rules (judgement calls, kept simple):

    * a stem counts if its instrument is a single label in the groups; stems labelled with a
      list of instruments (a handful in MedleyDB, e.g. ``[male singer, vocalists]``) are mixed
      sources and are skipped, as are stems without raw tracks;
    * a raw track keeps its own label if that label is in the groups (a "clean electric guitar"
      DI under a "distorted electric guitar" stem is real); any other raw label (e.g.
      "fx/processed sound") is replaced by the stem's label, so the synthetic corpus only
      holds the four groups' instruments.
    """
    structures = []
    for path in sorted(Path(metadata_dir).glob(f"*{METADATA_SUFFIX}")):
        meta = read_metadata(path)
        stems = []
        for stem_id in sorted(meta.get("stems") or {}):
            stem = meta["stems"][stem_id]
            label = stem.get("instrument")
            raws = stem.get("raw") or {}
            if not isinstance(label, str) or label not in INSTRUMENT_GROUP or not raws:
                continue
            raw_labels = []
            for raw_id in sorted(raws):
                raw_label = raws[raw_id].get("instrument")
                in_groups = isinstance(raw_label, str) and raw_label in INSTRUMENT_GROUP
                raw_labels.append(raw_label if in_groups else label)
            entry = {"instrument": label, "component": stem.get("component") or "", "n_raw": len(raw_labels)}
            if any(raw_label != label for raw_label in raw_labels):
                entry["raw_instruments"] = raw_labels
            stems.append(entry)
        if stems:
            name = path.name[: -len(METADATA_SUFFIX)]
            structures.append({"name": name, "genre": str(meta.get("genre") or ""), "stems": stems})
    return structures


def raw_instruments(stem: dict) -> list[str]:
    """The instrument labels of a structure stem's raw tracks, in order."""
    return stem.get("raw_instruments") or [stem["instrument"]] * stem["n_raw"]


def write_structures(structures: list[dict], path: Path | str) -> None:
    """Write structures as the package's JSON file: a header, then one multitrack per line."""
    lines = [json.dumps(s, ensure_ascii=False, separators=(",", ":")) for s in structures]
    header = {
        "description": "Structures of the MedleyDB multitracks (metadata: MIT licence) restricted "
        "to the default instrument groups; see stemstore.synth.structures.derive_structures.",
        "groups": {group: list(labels) for group, labels in DEFAULT_GROUPS.items()},
    }
    text = json.dumps(header, ensure_ascii=False)[:-1]
    text += ',\n"structures":[\n' + ",\n".join(lines) + "\n]}\n"
    Path(path).write_text(text, encoding="utf-8")


def load_structures() -> list[dict]:
    """The structures shipped with the package (``stemstore/data/medleydb_structures.json``)."""
    text = resources.files("stemstore.data").joinpath(STRUCTURES_FILE).read_text(encoding="utf-8")
    return json.loads(text)["structures"]


if __name__ == "__main__":  # regenerate the shipped structures from MedleyDB metadata
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m stemstore.synth.structures <MedleyDB metadata dir>")
    target = Path(__file__).resolve().parents[1] / "data" / STRUCTURES_FILE
    write_structures(derive_structures(Path(sys.argv[1])), target)
    print(f"wrote {target}")
