"""The values that status, role, kind and format columns, presets and rules may take.

Each is a :class:`TextEnum` whose members are plain strings, so ``TrackKind.STEM == "stem"`` and
they go into SQL and JSON as they are. The schema enforces the column enums with CHECK
constraints (``stemstore.store.schema.ENUM_COLUMNS``), and the CLI offers them as choices.
"""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):
    """A column's allowed values; members are plain strings (``TrackKind.STEM == "stem"``)."""

    __str__ = str.__str__
    __format__ = str.__format__

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


class CorpusFormat(TextEnum):
    MEDLEYDB = "medleydb"
    FOLDER = "folder"
    IMPORT = "import"  # feature values imported from a file, without audio


class TrackKind(TextEnum):
    MIX = "mix"
    STEM = "stem"
    RAW = "raw"


class AudioStatus(TextEnum):
    PRESENT = "present"
    MISSING = "missing"
    UNREADABLE = "unreadable"


class Role(TextEnum):
    """A segment's side of a raw/stem pair."""

    RAW = "raw"
    STEM = "stem"


class Split(TextEnum):
    TRAIN = "train"
    TEST = "test"


class SegmentSource(TextEnum):
    AUDIO = "audio"
    IMPORT = "import"


class SegmentStatus(TextEnum):
    """pending -> extracted | failed; skipped: no segment could be made (the reason says why)."""

    PENDING = "pending"
    EXTRACTED = "extracted"
    FAILED = "failed"
    SKIPPED = "skipped"


class ExclusionScope(TextEnum):
    """What a curator's exclusion leaves out: one segment pair or a whole multitrack."""

    PAIR = "pair"
    MULTITRACK = "multitrack"


class RunKind(TextEnum):
    IMPORT = "import"
    INGEST = "ingest"
    SEGMENT = "segment"
    EXTRACTION = "extraction"
    SELECTION = "selection"
    REGRESSION = "regression"


class RunStatus(TextEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# -- named parameter sets and rules of the analyses ---------------------------------------------
class SelectionPreset(TextEnum):
    """Parameter sets of the feature selection (``stemstore.analysis.selection.PRESETS``)."""

    PAPER = "paper"
    FAST = "fast"


class RegressionPreset(TextEnum):
    """'paper': the study's hyperparameters, unscaled; 'tuned': grid search with 5-fold CV."""

    PAPER = "paper"
    TUNED = "tuned"


class OutlierRule(TextEnum):
    """'3sigma' drops training pairs with a value over 3 sd from the mean; 'none' keeps all."""

    THREE_SIGMA = "3sigma"
    NONE = "none"


class IngestFormat(TextEnum):
    """Corpus layouts ingest reads (one module each in ``stemstore.corpus``)."""

    MEDLEYDB = "medleydb"
    FOLDER = "folder"
