"""Exceptions raised by the archive package; web/errors.py maps them to HTTP statuses.

Each ingest failure carries the DICOM FailureReason code (PS3.18 Table 10.5.3-1 / PS3.4 Annex GG)
that STOW-RS reports for it.
"""


class ArchiveError(Exception):
    """Base class of every error the archive package raises on purpose."""


class NotFound(ArchiveError):
    """The study, series, instance, frame or bulk data asked for is not in the archive."""


class InvalidQuery(ArchiveError):
    """A QIDO query parameter is unknown or malformed."""


class NotAcceptable(ArchiveError):
    """The representation asked for (transfer syntax, media type) cannot be produced."""


class IngestError(ArchiveError):
    """An instance could not be stored. ``failure_reason`` is the DICOM FailureReason code."""

    failure_reason = 0xC000  # Error: cannot understand

    def __init__(self, message: str, sop_class_uid: str = "", sop_instance_uid: str = "") -> None:
        super().__init__(message)
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


class InvalidInstance(IngestError):
    """The file is not valid DICOM, or required attributes are missing or malformed."""

    failure_reason = 0xC000


class InstanceTooLarge(IngestError):
    """The instance or its declared pixel data exceeds a configured limit."""

    failure_reason = 0xA700  # Refused: out of resources


class StudyMismatch(IngestError):
    """STOW to /studies/{uid} of an instance of another study."""

    failure_reason = 0xC409  # Study Instance UID mismatch? set from PS3.18 below


class InstanceConflict(IngestError):
    """Same SOP Instance UID already stored with different bytes."""

    failure_reason = 0x0111  # Duplicate SOP Instance


class UnsupportedSyntax(IngestError):
    """The transfer syntax is not one the archive can index."""

    failure_reason = 0xC122  # Referenced Transfer Syntax not supported


class RenditionNotExact(ArchiveError):
    """A transcoded frame did not decode to exactly the original's pixels; no rendition is made."""
