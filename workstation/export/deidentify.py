"""De-identification after PS3.15 Annex E, Basic Application Level Confidentiality Profile.

This is a documented *subset* of Table E.1-1 - the attributes that carry identity in the
images a workstation handles - applied at every nesting level (inside sequences too):

- **Replaced with a pseudonym** (action D): Patient's Name and Patient ID become
  ``ANON-xxxxxxxx``, derived from the original Patient ID and a secret of the export, so the
  studies of one patient stay together within an export but cannot be linked across exports.
- **Emptied** (action Z): :data:`EMPTIED` - birth date, sex, accession number, study ID,
  referring physician, and the study, series, acquisition, content and instance creation
  dates and times.
- **Removed** (action X): :data:`REMOVED` - other IDs and names, addresses, telephone
  numbers, age, size, weight, institution and department, physicians and operators,
  station name and AE titles, device and detector serial numbers, free-text descriptions
  and comments (study and series descriptions, protocol name, image comments), request and
  procedure step attributes, and every private tag (Annex E's default).
- **UIDs replaced** (action U): every UI value that is not a well-known UID of the standard
  (SOP classes, transfer syntaxes, coding schemes) and not in a class/syntax attribute
  (:data:`KEPT_UID_KEYWORDS`) is mapped to ``2.25.<integer>`` through one :class:`UidMap`
  per export, so a study UID is the same in every file of the export and references between
  instances (Referenced SOP Instance UID, Frame of Reference UID...) still point to the
  right instance; the File Meta Information's Media Storage SOP Instance UID follows.

Then Patient Identity Removed (0012,0062) is ``YES``, De-identification Method (0012,0063)
names the profile, De-identification Method Code Sequence holds DCM 113100 "Basic
Application Confidentiality Profile", and Longitudinal Temporal Information Modified is
``REMOVED``. Pixel data is never touched: identity burned into the pixels (Burned In
Annotation YES: :func:`deidentify` returns True) and overlays are not handled; nor are the
profile's options (retaining dates, descriptions, device identity).
"""

from __future__ import annotations

import hashlib
import os
import uuid

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

#: De-identification Method (LO: at most 64 characters).
METHOD = "PS3.15 E.1 Basic Application Confidentiality Profile (subset)"

#: Replaced with the export's pseudonym of the patient.
PSEUDONYMIZED = ("PatientName", "PatientID")

#: Emptied (zero-length value): action Z of the profile.
EMPTIED = (
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "ContentDate",
    "ContentTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "ContentCreatorName",
    "VerifyingObserverName",
    "PersonName",
    "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
)

#: Removed: action X of the profile.
REMOVED = (
    "AcquisitionDateTime",
    "OverlayDate",
    "OverlayTime",
    "CurveDate",
    "CurveTime",
    "PatientBirthTime",
    "PatientBirthName",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientNames",
    "OtherPatientIDsSequence",
    "IssuerOfPatientID",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "MedicalRecordLocator",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "MilitaryRank",
    "BranchOfService",
    "CountryOfResidence",
    "RegionOfResidence",
    "PatientReligiousPreference",
    "PatientState",
    "PregnancyStatus",
    "SmokingStatus",
    "MedicalAlerts",
    "Allergies",
    "PatientInsurancePlanCodeSequence",
    "ReferencedPatientSequence",
    "AdmittingDiagnosesDescription",
    "AdmissionID",
    "CurrentPatientLocation",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionalDepartmentName",
    "InstitutionalDepartmentTypeCodeSequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "OperatorsName",
    "OperatorIdentificationSequence",
    "RequestingPhysician",
    "RequestingService",
    "ScheduledPerformingPhysicianName",
    "ResponsiblePerson",
    "ResponsibleOrganization",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OrderCallbackPhoneNumber",
    "StationName",
    "StationAETitle",
    "PerformedStationName",
    "PerformedStationAETitle",
    "ScheduledStationAETitle",
    "PerformedLocation",
    "DeviceSerialNumber",
    "DeviceUID",
    "UniqueDeviceIdentifier",
    "DetectorID",
    "GantryID",
    "PlateID",
    "CassetteID",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "ImageComments",
    "StudyComments",
    "AcquisitionComments",
    "DerivationDescription",
    "TextComments",
    "InterpretationAuthor",
    "RequestAttributesSequence",
    "ScheduledStepAttributesSequence",
    "PerformedProcedureStepID",
    "PerformedProcedureStepDescription",
    "RequestedProcedureID",
    "IssuerOfAccessionNumberSequence",
)

#: UI attributes that name a class, syntax or scheme, never an instance: kept.
KEPT_UID_KEYWORDS = frozenset(
    {
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "ContextUID",
        "ContextGroupExtensionCreatorUID",
        "MappingResourceUID",
        "PrivateInformationCreatorUID",
        "TemplateExtensionOrganizationUID",
        "TemplateExtensionCreatorUID",
    }
)

_META_REMOVED = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
    "PrivateInformationCreatorUID",
    "PrivateInformation",
)

_PSEUDONYM_TAGS = frozenset(int(tag_for_keyword(k) or 0) for k in PSEUDONYMIZED)
_EMPTIED_TAGS = frozenset(int(tag_for_keyword(k) or 0) for k in EMPTIED)
_REMOVED_TAGS = frozenset(int(tag_for_keyword(k) or 0) for k in REMOVED)


class UidMap:
    """Original UID → replacement, the same for the whole export; new per export.

    A replacement is ``2.25.`` and the decimal value of a UUID derived from the original UID
    and this map's secret (PS3.5 B.2), so it is deterministic within the export and cannot be
    traced back without the secret, which is never written anywhere.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(32)
        self._map: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        new = self._map.get(uid)
        if new is None:
            digest = hashlib.sha256(self._secret + b"uid\x00" + uid.encode()).digest()
            new = f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"
            self._map[uid] = new
        return new

    def pseudonym(self, patient_id: str) -> str:
        """The export's stand-in for a patient: ``ANON-`` and 8 hexadecimal digits."""
        digest = hashlib.sha256(self._secret + b"patient\x00" + patient_id.encode()).hexdigest()
        return f"ANON-{digest[:8].upper()}"

    def __len__(self) -> int:
        return len(self._map)


def _is_instance_uid(element: DataElement, value: str) -> bool:
    keyword = element.keyword
    if keyword in KEPT_UID_KEYWORDS or keyword.endswith("ClassUID"):
        return False
    return value not in UID_dictionary


def _clean(ds: Dataset, uids: UidMap, pseudonym: str) -> None:
    for element in list(ds):
        tag = int(element.tag)
        if tag in _REMOVED_TAGS:
            del ds[element.tag]
        elif tag in _EMPTIED_TAGS:
            element.value = None
        elif tag in _PSEUDONYM_TAGS:
            element.value = pseudonym
        elif element.VR == "SQ":
            for item in element.value or Sequence():
                _clean(item, uids, pseudonym)
        elif element.VR == "UI" and element.value:
            if element.VM > 1:
                element.value = [
                    uids(str(v)) if _is_instance_uid(element, str(v)) else v for v in element.value
                ]
            elif _is_instance_uid(element, str(element.value)):
                element.value = uids(str(element.value))


def deidentify(ds: Dataset, uids: UidMap) -> bool:
    """De-identify ``ds`` in place (see the module's documentation); its UIDs through ``uids``.

    Returns True when the instance says identity may be burned into its pixels (Burned In
    Annotation YES), which no attribute change can remove.
    """
    pseudonym = uids.pseudonym(str(ds.get("PatientID", "") or ""))
    ds.remove_private_tags()
    _clean(ds, uids, pseudonym)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = [code]
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for keyword in _META_REMOVED:
            if keyword in meta:
                delattr(meta, keyword)
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
