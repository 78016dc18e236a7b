"""DICOM audit messages (PS3.15 A.5) of the audit trail's events, and a check of them.

The events of :mod:`workstation.audit` are written as DICOM audit messages (PS3.15 Annex A.5,
the RFC 3881-based schema) by :func:`to_xml`; :func:`check_xml` checks a file of them. Mapping:

=================  ==========================================  ======  ==========================
action             EventID (DCM)                               Action  participants
=================  ==========================================  ======  ==========================
retrieve           110104 DICOM Instances Transferred           C       peer = Source (110153),
                                                                        us = Destination (110152)
receive (a push)   110104 DICOM Instances Transferred           C       peer = Source, us = Dest.
send               110104 DICOM Instances Transferred           R       us = Source, peer = Dest.
export             110106 Export                                R       us = Source, the folder
                                                                        or file = Destination
                                                                        Media (110154)
import             110107 Import                                C       the path = Source Media
                                                                        (110155), us = Dest.
delete             110105 DICOM Study Deleted                   D       us
=================  ==========================================  ======  ==========================

Every message also has the person (``UserID`` = OS user, ``UserIsRequestor="true"``; for a
push the requestor is the peer), ``AuditSourceIdentification`` (``AuditSourceID`` = our AE
title @ host name, ``AuditSourceTypeCode`` 4 "Application Server"), one
``ParticipantObjectIdentification`` per study (type 2 system object, role 3 report,
``ParticipantObjectIDTypeCode`` DCM 110180 "Study Instance UID", the instance count in
``ParticipantObjectDescription``) and one per patient (type 1 person, role 1 patient, ID type
RFC-3881 2 "Patient Number", ``ParticipantObjectName``). ``EventOutcomeIndicator``: 0 done,
4 partial or cancelled (minor failure), 8 failed (serious failure); the operation's message is
``EventOutcomeDescription``. Coded values use the ``csd-code``/``codeSystemName``/
``originalText`` attributes of the current schema. Several messages are written in one file
as ``<AuditMessages>`` holding one ``<AuditMessage>`` each.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from workstation.audit import AuditEvent, iso_utc

_EVENT_IDS = {
    "retrieve": ("110104", "DICOM Instances Transferred", "C"),
    "receive": ("110104", "DICOM Instances Transferred", "C"),
    "send": ("110104", "DICOM Instances Transferred", "R"),
    "export": ("110106", "Export", "R"),
    "import": ("110107", "Import", "C"),
    "delete": ("110105", "DICOM Study Deleted", "D"),
}
_OUTCOME_INDICATORS = {"done": "0", "partial": "4", "cancelled": "4", "failed": "8"}
_SOURCE = ("110153", "Source Role ID")
_DESTINATION = ("110152", "Destination Role ID")
_SOURCE_MEDIA = ("110155", "Source Media")
_DESTINATION_MEDIA = ("110154", "Destination Media")

#: What :func:`check_xml` requires of each AuditMessage (PS3.15 A.5.1).
REQUIRED = {
    "EventIdentification": ("EventActionCode", "EventDateTime", "EventOutcomeIndicator"),
    "ActiveParticipant": ("UserID", "UserIsRequestor"),
    "AuditSourceIdentification": ("AuditSourceID",),
    "ParticipantObjectIdentification": (
        "ParticipantObjectID",
        "ParticipantObjectTypeCode",
        "ParticipantObjectTypeCodeRole",
    ),
}


def _code(parent: ET.Element, tag: str, code: str, system: str, text: str) -> ET.Element:
    return ET.SubElement(
        parent, tag, {"csd-code": code, "codeSystemName": system, "originalText": text}
    )


def _participant(
    message: ET.Element,
    user: str,
    *,
    requestor: bool,
    role: tuple[str, str] | None = None,
    host: str = "",
    aet: str = "",
    media: bool = False,
) -> None:
    attrs = {"UserID": user, "UserIsRequestor": "true" if requestor else "false"}
    if aet:
        attrs["AlternativeUserID"] = f"AETITLES={aet}"
    if host:
        attrs["NetworkAccessPointID"] = host
        numeric = host.replace(".", "").isdigit() or ":" in host
        attrs["NetworkAccessPointTypeCode"] = "2" if numeric else "1"
    if media:
        attrs["UserIsRequestor"] = "false"
    element = ET.SubElement(message, "ActiveParticipant", attrs)
    if role is not None:
        _code(element, "RoleIDCode", role[0], "DCM", role[1])


def audit_message(event: AuditEvent, *, source_id: str | None = None) -> ET.Element:
    """One event as an ``AuditMessage`` element (see the module's mapping)."""
    code, name, action_code = _EVENT_IDS.get(event.action, ("110104", event.action, "E"))
    message = ET.Element("AuditMessage")
    ident = ET.SubElement(
        message,
        "EventIdentification",
        {
            "EventActionCode": action_code,
            "EventDateTime": iso_utc(event.time),
            "EventOutcomeIndicator": _OUTCOME_INDICATORS.get(event.outcome, "8"),
        },
    )
    _code(ident, "EventID", code, "DCM", name)
    if event.message:
        ET.SubElement(ident, "EventOutcomeDescription").text = event.message
    host = socket.gethostname()
    us = event.local_aet or "WORKSTATION"
    peer = event.peer_aet or event.node
    if event.action == "receive":  # the peer asked (a push)
        _participant(message, peer, requestor=True, role=_SOURCE, host=event.peer_host, aet=peer)
        _participant(message, us, requestor=False, role=_DESTINATION, host=host, aet=us)
        _participant(message, event.user, requestor=False)
    else:
        _participant(message, event.user, requestor=True)
        if event.action == "retrieve":
            _participant(message, peer, requestor=False, role=_SOURCE, host=event.peer_host)
            _participant(message, us, requestor=False, role=_DESTINATION, host=host, aet=us)
        elif event.action == "send":
            _participant(message, us, requestor=False, role=_SOURCE, host=host, aet=us)
            _participant(message, peer, requestor=False, role=_DESTINATION, host=event.peer_host)
        elif event.action == "export":
            _participant(message, us, requestor=False, role=_SOURCE, host=host)
            _participant(
                message,
                event.detail or "media",
                requestor=False,
                role=_DESTINATION_MEDIA,
                media=True,
            )
        elif event.action == "import":
            _participant(
                message, event.detail or "media", requestor=False, role=_SOURCE_MEDIA, media=True
            )
            _participant(message, us, requestor=False, role=_DESTINATION, host=host)
    source = ET.SubElement(
        message, "AuditSourceIdentification", {"AuditSourceID": source_id or f"{us}@{host}"}
    )
    _code(source, "AuditSourceTypeCode", "4", "DCM", "Application Server")
    for uid in event.study_uids:
        study = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": uid,
                "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "3",
            },
        )
        _code(study, "ParticipantObjectIDTypeCode", "110180", "DCM", "Study Instance UID")
        if len(event.study_uids) == 1:
            ET.SubElement(
                study, "ParticipantObjectDescription"
            ).text = f"{event.instances} instance(s), {event.failed} failed"
    for patient_id, patient_name in event.patients:
        patient = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": patient_id,
                "ParticipantObjectTypeCode": "1",
                "ParticipantObjectTypeCodeRole": "1",
            },
        )
        _code(patient, "ParticipantObjectIDTypeCode", "2", "RFC-3881", "Patient Number")
        if patient_name:
            ET.SubElement(patient, "ParticipantObjectName").text = patient_name
    return message


def to_xml(events: Sequence[AuditEvent], *, source_id: str | None = None) -> bytes:
    """The events as UTF-8 XML: one ``AuditMessage`` for one event, else ``AuditMessages``
    holding one per event. The result passes :func:`check_xml`."""
    messages = [audit_message(e, source_id=source_id) for e in events]
    if len(messages) == 1:
        root = messages[0]
    else:
        root = ET.Element("AuditMessages")
        root.extend(messages)
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


def check_xml(data: bytes) -> list[str]:
    """What is wrong with audit-message XML: not well-formed, or an AuditMessage without the
    elements and attributes PS3.15 A.5.1 requires. An empty list: it is fine."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    messages = [root] if root.tag == "AuditMessage" else root.findall("AuditMessage")
    if root.tag not in ("AuditMessage", "AuditMessages"):
        return [f"the root element is {root.tag}, not AuditMessage(s)"]
    problems: list[str] = []
    for n, message in enumerate(messages, 1):
        for tag, attributes in REQUIRED.items():
            elements = message.findall(tag)
            if not elements and tag != "ParticipantObjectIdentification":
                problems.append(f"message {n}: no {tag}")
            for element in elements:
                problems += [
                    f"message {n}: {tag} without {a}" for a in attributes if not element.get(a)
                ]
        event_id = message.find("EventIdentification/EventID")
        if event_id is None or not event_id.get("csd-code"):
            problems.append(f"message {n}: no EventID code")
        children = [c.tag for c in message]
        if children and children[0] != "EventIdentification":
            problems.append(f"message {n}: EventIdentification is not first")
    return problems
