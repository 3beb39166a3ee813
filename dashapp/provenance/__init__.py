"""Provenance: what a dashapp user did, recorded as it happens, exported and reopened.

Modelled on Science Capsule: the events of a scientist's work (the environment, the files
opened, the views looked at, cluster actions, computations, notes and snapshots) are appended
to a per-workspace record without any effort from the user, shown on a timeline, exported as
W3C PROV, and packed into a capsule another user opens to see the timeline and restore the
views.

=====================  ======================================================================
:class:`Record`        the append-only ``record.jsonl`` of a workspace (a background writer:
                       recording never makes the slider wait on the disk)
:class:`ViewRecorder`  records only the views a user stayed on (debounced)
:class:`Event`         one line of the record
capture_environment    packages, Python, platform, git commit and dirty state, container, job
to_prov, export_prov   the record as PROV-JSON (the ``prov`` package)
export_capsule         one zip: record, attachments, environment lock, PROV, optional inputs
open_capsule           check, extract and reopen a capsule
=====================  ======================================================================

No UI library is imported here: batch jobs and Dask workers can record computations too.
"""

from __future__ import annotations

from .capsule import (
    CAPSULE_FORMAT,
    CAPSULE_VERSION,
    Capsule,
    CapsuleError,
    CapsuleLimits,
    capsule_cache,
    export_capsule,
    open_capsule,
)
from .environment import capture_environment, container_info, git_info, lock_text
from .prov import DASHAPP_NAMESPACE, export_prov, to_prov
from .record import (
    KINDS,
    SMALL_FILE_BYTES,
    Event,
    Record,
    RecordWarning,
    ViewRecorder,
    default_workspace,
    format_timeline,
    open_record,
    record_server_start,
    same_root,
)

__all__ = [
    "CAPSULE_FORMAT",
    "CAPSULE_VERSION",
    "DASHAPP_NAMESPACE",
    "KINDS",
    "SMALL_FILE_BYTES",
    "Capsule",
    "CapsuleError",
    "CapsuleLimits",
    "Event",
    "Record",
    "RecordWarning",
    "ViewRecorder",
    "capsule_cache",
    "capture_environment",
    "container_info",
    "default_workspace",
    "export_capsule",
    "export_prov",
    "format_timeline",
    "git_info",
    "lock_text",
    "open_capsule",
    "open_record",
    "record_server_start",
    "same_root",
    "to_prov",
]
