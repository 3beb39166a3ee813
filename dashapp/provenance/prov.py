"""The record as W3C PROV (PROV-JSON), with the ``prov`` package.

How events map to PROV (identifiers in the ``dashapp`` namespace, :data:`DASHAPP_NAMESPACE`):

=================  ===========================================================================
user               ``prov:Agent`` of type ``prov:Person`` (``user-<name>``)
environment        ``prov:Agent`` of type ``prov:SoftwareAgent`` (``software-<id>``) acting on
                   behalf of the user, and its ``prov:Plan`` entity (``environment-<id>``)
                   holding the package lock
file               ``prov:Entity`` per version of a file (path, size, mtime): ``file-<hash>``
                   with ``prov:location``, size, mtime and SHA-256; a later version of the
                   same path ``wasRevisionOf`` the earlier one
view, snapshot     ``prov:Entity`` (``view-<id>``, ``snapshot-<id>``) with its deep link,
                   ``wasDerivedFrom`` the file version it shows, ``wasAttributedTo`` the user
note               ``prov:Entity`` with the text as ``prov:value``, attributed to the user,
                   derived from its file if it has one
computation        ``prov:Activity`` (start and end time) that ``used`` its inputs; its outputs
                   are entities it generated (``wasGeneratedBy``); associated with the user
                   and with the software agent under the environment plan
cluster, session   ``prov:Activity`` at the event's time, associated in the same way
=================  ===========================================================================

The ``prov`` package is imported when a document is built, so recording works without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environment import lock_text, summary
from .record import Event, Record, parse_time

if TYPE_CHECKING:
    from prov.model import ProvDocument

__all__ = ["DASHAPP_NAMESPACE", "export_prov", "to_prov"]

#: The namespace of dashapp's identifiers and attributes in PROV documents.
DASHAPP_NAMESPACE = "urn:dashapp:"


def _local(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unknown"


def _value(value: Any) -> Any:
    """A PROV attribute value: scalars as they are, anything else as JSON text."""
    if isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _attrs(ns: Any, data: dict[str, Any], skip: Iterable[str] = ()) -> dict[Any, Any]:
    skipped = set(skip)
    return {
        ns[_local(k)]: _value(v)
        for k, v in data.items()
        if k not in skipped and v is not None and v != {} and v != []
    }


def to_prov(events: Iterable[Event], user: str | None = None) -> ProvDocument:
    """Build a PROV document from events (see the module docstring for the mapping).

    Parameters
    ----------
    events
        The record's events (:meth:`Record.events`), any order.
    user
        The person to credit; default the user named by the latest environment event, else
        the current user.

    Returns
    -------
    prov.model.ProvDocument
    """
    from prov.model import PROV, PROV_LABEL, PROV_LOCATION, PROV_TYPE, PROV_VALUE, ProvDocument

    from .environment import _user

    ordered = sorted(events, key=lambda e: e.time)
    doc = ProvDocument()
    ns = doc.add_namespace("dashapp", DASHAPP_NAMESPACE)
    envs = [e for e in ordered if e.kind == "environment"]
    if user is None:
        user = next((e.data.get("user") for e in reversed(envs) if e.data.get("user")), None)
    user = user or _user()
    person = doc.agent(ns[f"user-{_local(user)}"], {PROV_TYPE: PROV["Person"], PROV_LABEL: user})

    # the software agent and plan in force at each moment: the latest environment before it
    software: list[tuple[str, Any, Any]] = []
    for e in envs:
        env = e.data
        git = env.get("git") or {}
        agent = doc.agent(
            ns[f"software-{e.id}"],
            {
                PROV_TYPE: PROV["SoftwareAgent"],
                PROV_LABEL: f"dashapp {env.get('dashapp', '?')}",
                ns["time"]: parse_time(e.time),
                **_attrs(
                    ns,
                    {
                        "python": (env.get("python") or {}).get("version"),
                        "executable": (env.get("python") or {}).get("executable"),
                        "platform": (env.get("platform") or {}).get("platform"),
                        "hostname": env.get("hostname"),
                        "git_repo": git.get("repo"),
                        "git_commit": git.get("commit"),
                        "git_dirty": git.get("dirty"),
                        "container": env.get("container"),
                        "slurm": env.get("slurm"),
                    },
                ),
            },
        )
        plan = doc.entity(
            ns[f"environment-{e.id}"],
            {
                PROV_TYPE: PROV["Plan"],
                PROV_LABEL: summary(env),
                ns["packages"]: len(env.get("packages") or {}),
                ns["lock"]: lock_text(env),
            },
        )
        doc.actedOnBehalfOf(agent, person)
        software.append((e.time, agent, plan))
    if not software:
        from .._version import __version__

        agent = doc.agent(
            ns["software"], {PROV_TYPE: PROV["SoftwareAgent"], PROV_LABEL: f"dashapp {__version__}"}
        )
        doc.actedOnBehalfOf(agent, person)
        software.append(("", agent, None))

    def software_at(time: str) -> tuple[Any, Any]:
        chosen = software[0]
        for entry in software:
            if entry[0] <= time:
                chosen = entry
        return chosen[1], chosen[2]

    def associate(activity: Any, time: str) -> None:
        doc.wasAssociatedWith(activity, person)
        agent, plan = software_at(time)
        doc.wasAssociatedWith(activity, agent, plan)

    # files: one entity per version; the latest version of each path seen so far
    versions: dict[tuple[Any, ...], Any] = {}
    latest: dict[str, Any] = {}

    def file_entity(info: dict[str, Any]) -> Any:
        path = info.get("path") or info.get("file")
        key = (path, info.get("size"), info.get("mtime_ns"))
        entity = versions.get(key)
        if entity is None:
            digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:16]
            attrs = {
                PROV_TYPE: ns["File"],
                PROV_LABEL: info.get("file") or path,
                **({PROV_LOCATION: info["path"]} if info.get("path") else {}),
                **_attrs(
                    ns,
                    {k: info.get(k) for k in ("file", "root", "size", "mtime", "sha256")},
                ),
            }
            entity = versions[key] = doc.entity(ns[f"file-{digest}"], attrs)
            previous = latest.get(path)
            if previous is not None and info.get("size") is not None:
                doc.wasRevisionOf(entity, previous)
        elif info.get("sha256") and not entity.get_attribute(ns["sha256"]):
            entity.add_attributes({ns["sha256"]: info["sha256"]})
        for name in {path, info.get("file")} - {None}:
            latest[name] = entity
        return entity

    def shown_file(event: Event) -> Any:
        if not event.file:
            return None
        return latest.get(event.file) or file_entity({"file": event.file})

    kinds = {"view": "View", "snapshot": "Snapshot", "note": "Note"}
    for e in ordered:
        when = parse_time(e.time)
        if e.kind == "file":
            file_entity(e.data)
        elif e.kind in kinds:
            attrs = {
                PROV_TYPE: ns[kinds[e.kind]],
                PROV_LABEL: e.title,
                ns["time"]: when,
                **({ns["link"]: e.link} if e.link else {}),
                **({ns["dataset"]: e.data["dataset"]} if e.data.get("dataset") else {}),
                **({ns["attachments"]: _value(e.attachments)} if e.attachments else {}),
            }
            if e.kind == "note":
                attrs[PROV_VALUE] = str(e.data.get("text", ""))
            if e.kind == "snapshot" and e.attachments:
                attrs[PROV_LOCATION] = e.attachments[0]
            entity = doc.entity(ns[f"{e.kind}-{e.id}"], attrs)
            source = shown_file(e)
            if source is not None:
                doc.wasDerivedFrom(entity, source)
            doc.wasAttributedTo(entity, person)
        elif e.kind == "computation":
            start = parse_time(e.data["started"]) if e.data.get("started") else when
            activity = doc.activity(
                ns[f"computation-{e.id}"],
                start,
                when,
                {
                    PROV_TYPE: ns["Computation"],
                    PROV_LABEL: e.title,
                    **_attrs(ns, e.data, skip=("inputs", "outputs", "started")),
                },
            )
            for info in e.data.get("inputs", []):
                doc.used(activity, file_entity(info), start)
            for info in e.data.get("outputs", []):
                doc.wasGeneratedBy(file_entity(info), activity, when)
            associate(activity, e.time)
        elif e.kind in ("cluster", "session"):
            label = "ClusterAction" if e.kind == "cluster" else "Session"
            activity = doc.activity(
                ns[f"{e.kind}-{e.id}"],
                when,
                when,
                {PROV_TYPE: ns[label], PROV_LABEL: e.title, **_attrs(ns, e.data)},
            )
            associate(activity, e.time)
    return doc


def export_prov(
    record: Record | Iterable[Event], path: str | os.PathLike[str], user: str | None = None
) -> Path:
    """Write the record as PROV-JSON to ``path`` and return the path.

    Parameters
    ----------
    record
        A :class:`Record` (flushed first) or its events.
    path
        The ``.json`` file to write.
    user
        See :func:`to_prov`.
    """
    if isinstance(record, Record):
        record.flush(timeout=30)
        events: Iterable[Event] = record.events()
    else:
        events = record
    doc = to_prov(events, user=user)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "w", encoding="utf-8") as fh:
        doc.serialize(fh, format="json", indent=2)
    os.replace(partial, target)
    return target
