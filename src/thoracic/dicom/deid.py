"""De-identification: the DICOM Basic Application Level Confidentiality Profile (PS3.15 E.1.1).

:func:`deidentify` applies the profile's actions (Table E.1-1) to the attributes a chest
radiograph, its presentation states, SRs and segmentations carry:

- ``X`` remove, ``Z`` empty (or a dummy where a value is needed), ``D`` a dummy value;
  where the table gives a choice (``X/Z``, ``Z/D``, ``X/Z/D``) the emptied form is kept so
  type 2 attributes stay present.
- ``U``: every UID that is not a DICOM-defined one (``1.2.840.10008.*``, SOP classes, transfer
  syntaxes, coding schemes) is replaced by ``2.25.<HMAC-SHA256(salt, uid)>``: the same
  source UID always gets the same replacement under one salt, so study / series / instance
  relations survive across the image and every result built from it, and nobody can go back
  without the salt.
- Patient ID and name become one pseudonym ``ANON-<hex>`` (HMAC of the patient ID under the salt;
  the name ``ANON-<hex>^``), so the images of one patient stay together.
- All private attributes, overlays (60xx) and curves (50xx) are removed, and, beyond the table,
  every remaining person name, date, time, age and value of unknown VR (UN) not listed (a safety
  net; ``ContentDate``/``ContentTime`` and a presentation state's creation date/time get dummies
  or stay).
- ``PatientIdentityRemoved`` = ``YES``, ``DeidentificationMethod`` and
  ``DeidentificationMethodCodeSequence`` (DCM 113100, and 113110 with ``keep_uids``) are added;
  ``BurnedInAnnotation`` is left as it is (pixel data are never changed: check that flag).

>>> import pydicom
>>> from pydicom.dataset import Dataset
>>> ds = Dataset(); ds.PatientName = "Doe^Jane"; ds.PatientID = "12345"; ds.StudyInstanceUID = "1.2.3.4"
>>> anon = deidentify(ds, salt="site secret")
>>> anon.PatientName.family_name == anon.PatientID != "12345", anon.StudyInstanceUID.startswith("2.25.")
(True, True)
>>> anon.StudyInstanceUID == deidentify(ds, salt="site secret").StudyInstanceUID
True
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

from thoracic.dicom.uids import hashed_uid, safe_uid_name
from thoracic.errors import ConfigError, ReadError

__all__ = ["PROFILES", "deidentify", "deidentify_file", "pseudonym"]

PROFILES = ("basic",)

# A per-process secret: without a salt, the pseudonyms and UIDs are consistent within one process
# (one service run) and cannot be linked across runs. Pass a site secret for stable ones.
_PROCESS_SALT = secrets.token_bytes(32)

# PS3.15 Table E.1-1, Basic Profile column, for the attributes of radiographs, PR, SR and SEG
# (keyword -> action). U: replace the UID; C: not used (no cleaning option).
_X = "X"
_Z = "Z"
_D = "D"
_U = "U"
_K = "K"  # keep (recurse into sequences: their UIDs are replaced)
_ACTIONS: dict[str, str] = {
    # --- remove (X, X/D) ------------------------------------------------------------------------
    **dict.fromkeys(
        """AcquisitionComments AcquisitionContextSequence AcquisitionDeviceProcessingDescription
        AcquisitionProtocolDescription ActualHumanPerformersSequence AdditionalPatientHistory
        AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription
        AdmittingTime Allergies Arbitrary AuthorObserverSequence BranchOfService CassetteID
        CommentsOnThePerformedProcedureStep ConfidentialityConstraintOnPatientDataDescription
        ContentCreatorIdentificationCodeSequence ContentSequence ContributionDescription
        CountryOfResidence CurrentPatientLocation CurveDate CurveTime CustodialOrganizationSequence
        DataSetTrailingPadding DerivationDescription DetectorID DigitalSignatureUID
        DigitalSignaturesSequence DischargeDiagnosisDescription DistributionAddress DistributionName
        EthnicGroup FrameComments GantryID GeneratorID HumanPerformerName
        HumanPerformerOrganization IconImageSequence IdentifyingComments ImageComments
        ImagePresentationComments ImagingServiceRequestComments Impressions InstanceCreationDate
        InstanceCreationTime InstitutionAddress InstitutionalDepartmentName
        InstitutionalDepartmentTypeCodeSequence InsurancePlanIdentification
        IntendedRecipientsOfResultsIdentificationSequence InterpretationApproverSequence
        InterpretationAuthor InterpretationDiagnosisDescription InterpretationIDIssuer
        InterpretationRecorder InterpretationText InterpretationTranscriber IssuerOfAdmissionID
        IssuerOfPatientID IssuerOfServiceEpisodeID MAC MedicalAlerts MedicalRecordLocator
        MilitaryRank ModifiedAttributesSequence ModifiedImageDescription ModifyingDeviceID
        ModifyingDeviceManufacturer NameOfPhysiciansReadingStudy NamesOfIntendedRecipientsOfResults
        Occupation OperatorIdentificationSequence OrderCallbackPhoneNumber OrderEnteredBy
        OrderEntererLocation OriginalAttributesSequence OtherPatientIDs OtherPatientIDsSequence
        OtherPatientNames OverlayDate OverlayTime ParticipantSequence PatientAddress
        PatientAge PatientBirthName PatientBirthTime PatientComments PatientInstitutionResidence
        PatientInsurancePlanCodeSequence PatientMotherBirthName PatientPrimaryLanguageCodeSequence
        PatientPrimaryLanguageModifierCodeSequence PatientReligiousPreference PatientSize
        PatientState PatientTelecomInformation PatientTelephoneNumbers PatientTransportArrangements
        PatientWeight PerformedLocation PerformedProcedureStepDescription
        PerformedProcedureStepEndDate PerformedProcedureStepEndTime PerformedProcedureStepID
        PerformedProcedureStepStartDate PerformedProcedureStepStartTime PerformedStationAETitle
        PerformedStationGeographicLocationCodeSequence PerformedStationName
        PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence
        PerformingPhysicianName PersonAddress PersonTelephoneNumbers
        PhysicianApprovingInterpretation PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
        PhysiciansReadingStudyIdentificationSequence PlateID PreMedication PregnancyStatus
        ProtocolName ReasonForStudy ReasonForTheImagingServiceRequest
        ReferencedDigitalSignatureSequence ReferencedPatientAliasSequence ReferencedPatientSequence
        ReferencedSOPInstanceMACSequence ReferringPhysicianAddress
        ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers
        RegionOfResidence RequestAttributesSequence RequestedContrastAgent
        RequestedProcedureComments RequestedProcedureID RequestedProcedureLocation
        RequestingPhysician RequestingService ResponsibleOrganization ResponsiblePerson
        ResultsComments ResultsDistributionListSequence ResultsIDIssuer
        ScheduledHumanPerformersSequence ScheduledPatientInstitutionResidence
        ScheduledPerformingPhysicianIdentificationSequence ScheduledPerformingPhysicianName
        ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime ScheduledProcedureStepLocation
        ScheduledProcedureStepStartDate ScheduledProcedureStepStartTime ScheduledStationAETitle
        ScheduledStationGeographicLocationCodeSequence ScheduledStationName
        ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
        SeriesDate SeriesDescription SeriesTime ServiceEpisodeDescription ServiceEpisodeID
        SmokingStatus SpecialNeeds StudyComments StudyDescription StudyIDIssuer TextComments
        TextString TimezoneOffsetFromUTC TopicAuthor TopicKeywords TopicSubject TopicTitle
        VisitComments AcquisitionDate AcquisitionTime AcquisitionDateTime
        DateOfLastCalibration TimeOfLastCalibration DateOfSecondaryCapture TimeOfSecondaryCapture
        ReferencedPerformedProcedureStepSequence ReferencedStudySequence
        AnnotationGroupDescription CameraOwnerName CertifiedTimestamp
        ClinicalTrialProtocolEthicsCommitteeApprovalNumber
        ClinicalTrialSeriesDescription ClinicalTrialSeriesID ClinicalTrialTimePointDescription
        ConsultingPhysicianIdentificationSequence ContainerComponentID ContainerDescription
        DecompositionDescription DeviceDescription DeviceSettingDescription FilterLookupTableDescription
        InstanceCoercionDateTime InstanceOriginStatus InterpretationID IssuerOfAdmissionIDSequence
        IssuerOfServiceEpisodeIDSequence LensMake LensModel LensSerialNumber LensSpecification
        LongDeviceDescription MakerNote ModifiedImageDate ModifiedImageTime MultienergyAcquisitionDescription
        NetworkID NonconformingDataElementValue NonconformingModifiedAttributesSequence
        OrderCallbackTelecomInformation Originator PersonTelecomInformation PyramidDescription PyramidLabel
        ReasonForRequestedProcedureCodeSequence ReasonForTheRequestedProcedure ReasonForVisit
        ReasonForVisitCodeSequence ReceivingAE ReferencedPatientPhotoSequence RequestedSeriesDescription
        RequestingAE RespiratoryMotionCompensationTechniqueDescription ResultsID RetrieveAETitle
        ScheduledProcedureStepDescription ScheduledProcedureStepID SlideIdentifier SourceManufacturer
        SpecimenAccessionNumber SpecimenDetailedDescription SpecimenShortDescription StationAETitle
        TemplateLocalVersion TemplateVersion UDISequence UniqueDeviceIdentifier WaveformFilterDescription
        XRayDetectorLabel""".split(),
        _X,
    ),
    # --- empty (Z, X/Z, Z/D, X/Z/D): type 2 attributes stay present -------------------------------
    **dict.fromkeys(
        """AccessionNumber ContentCreatorName DeviceSerialNumber
        FillerOrderNumberImagingServiceRequest InstitutionCodeSequence InstitutionName
        OperatorsName PatientBirthDate PatientSex PatientSexNeutered
        PlacerOrderNumberImagingServiceRequest ReferringPhysicianName RequestedProcedureDescription
        ReviewerName StationName StudyDate StudyID StudyTime
        VerifyingObserverIdentificationCodeSequence BarcodeValue ClinicalTrialCoordinatingCenterName
        ClinicalTrialProtocolName ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialTimePointID
        ConsultingPhysicianName DeviceAlternateIdentifier LabelText ManufacturerDeviceIdentifier
        SourceOfPreviousValues SourceSerialNumber""".split(),
        _Z,
    ),
    # --- dummy (D) -------------------------------------------------------------------------------
    **dict.fromkeys(
        """ContentDate ContentTime ContrastBolusAgent PersonName VerifyingObserverName
        PatientName PatientID VerifyingOrganization VerifyingObserverSequence
        PersonIdentificationCodeSequence GraphicAnnotationSequence AcquisitionFieldOfViewLabel
        AnnotationGroupLabel CertificateOfSigner ClinicalTrialProtocolEthicsCommitteeName
        ClinicalTrialProtocolID ClinicalTrialSponsorName ClinicalTrialSubjectID
        ClinicalTrialSubjectReadingID ContainerIdentifier DestinationAE DeviceLabel ModifyingSystem
        ReasonForTheAttributeModification SpecimenIdentifier XRayDetectorID XRaySourceID
        PresentationCreationDate PresentationCreationTime""".split(),
        _D,
    ),
    # --- kept sequences whose UIDs are replaced (X/Z/U*) ------------------------------------------
    **dict.fromkeys(
        """ReferencedImageSequence SourceImageSequence ReferencedSeriesSequence
        CurrentRequestedProcedureEvidenceSequence PertinentOtherEvidenceSequence
        ReferencedInstanceSequence""".split(),
        _K,
    ),
}

#: UIDs that name DICOM things rather than this patient's data: never replaced.
_KEEP_UID_KEYWORDS = frozenset(
    """SOPClassUID ReferencedSOPClassUID MediaStorageSOPClassUID TransferSyntaxUID
    ImplementationClassUID CodingSchemeUID ContextUID MappingResourceUID
    RelatedGeneralSOPClassUID OriginalSpecializedSOPClassUID ReferencedSOPClassUIDInFile
    ReferencedTransferSyntaxUIDInFile SOPClassesInStudy EncryptedContentTransferSyntaxUID
    ContextGroupExtensionCreatorUID""".split()
)
_DICOM_ROOT = "1.2.840.10008."
#: VRs that the safety net removes when the table does not name the attribute.
_SAFETY_VRS = frozenset({"PN", "DA", "DT", "TM", "AS"})

_DUMMY_BY_VR = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "PN": "ANONYMOUS",
                "LO": "ANONYMOUS", "SH": "ANONYMOUS", "CS": "ANONYMOUS", "LT": "ANONYMOUS"}

_METHOD = "thoracic: PS3.15 E.1.1 Basic Profile"  # LO: at most 64 characters


def _salt_bytes(salt: str | bytes | None) -> bytes:
    if salt is None:
        return _PROCESS_SALT
    if isinstance(salt, str):
        salt = salt.encode("utf-8")
    if not isinstance(salt, bytes) or not salt:
        raise ConfigError("the de-identification salt must be a non-empty string or bytes")
    return salt


def pseudonym(value: str, salt: str | bytes | None = None) -> str:
    """The pseudonym of a patient ID under ``salt`` (``ANON-`` and 16 hex digits).

    >>> pseudonym("12345", "s") == pseudonym("12345", "s") != pseudonym("12346", "s")
    True
    """
    digest = hmac.new(_salt_bytes(salt), b"patient:" + str(value).strip().encode("utf-8"), hashlib.sha256)
    return "ANON-" + digest.hexdigest()[:16].upper()


def _replace_uid(value: Any, salt: bytes) -> Any:
    def one(v: Any) -> str:
        s = str(v).strip().rstrip("\x00")
        return s if not s or s.startswith(_DICOM_ROOT) else hashed_uid(s, salt)

    if value is None:
        return value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [one(v) for v in value]
    return one(value)


def _walk(ds: Any, visit: Callable[[Any, Any], None]) -> None:
    for elem in list(ds):
        visit(ds, elem)
        if elem.tag in ds and elem.VR == "SQ":
            for item in elem.value:
                _walk(item, visit)


def deidentify(
    ds: Any,
    *,
    profile: str = "basic",
    keep_uids: bool = False,
    salt: str | bytes | None = None,
) -> Any:
    """A de-identified copy of a dataset (the input is not changed).

    Parameters
    ----------
    ds:
        A :class:`pydicom.dataset.Dataset` (with or without pixel data; the pixels are copied
        unchanged).
    profile:
        ``"basic"``: PS3.15 E.1.1 (the only profile implemented).
    keep_uids:
        The Retain UIDs Option (DCM 113110): study, series and instance UIDs stay as they are.
    salt:
        The secret of the pseudonyms and replacement UIDs. The same salt gives the same
        replacements in every process (keep it secret and stable at a site); ``None`` uses a
        random secret of this process (consistent within one run only).

    Returns
    -------
    pydicom.dataset.Dataset
        The de-identified copy, with ``PatientIdentityRemoved``, ``DeidentificationMethod`` and
        ``DeidentificationMethodCodeSequence`` set and a new file meta (if the input had one).

    Raises
    ------
    ConfigError
        An unknown profile or an empty salt.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    if profile not in PROFILES:
        raise ConfigError.unknown("de-identification profile", str(profile), PROFILES)
    key = _salt_bytes(salt)
    out = copy.deepcopy(ds)
    patient_id = str(ds.get("PatientID", "") or "")

    out.remove_private_tags()
    for elem in list(out):  # overlays (60xx) and curves (50xx), top level only (their home)
        if elem.tag.group & 0xFF00 in (0x5000, 0x6000) and elem.tag.group % 2 == 0:
            del out[elem.tag]

    def visit(parent: Any, elem: Any) -> None:
        keyword = elem.keyword
        action = _ACTIONS.get(keyword)
        if elem.VR == "UI":
            if keyword in _KEEP_UID_KEYWORDS or keep_uids:
                return
            elem.value = _replace_uid(elem.value, key)
            return
        if action is None and keyword.startswith("GPS"):  # GPS* (camera position): all X
            action = _X
        if action is None:
            if elem.VR in _SAFETY_VRS or elem.VR == "UN":
                del parent[elem.tag]  # safety net: names, dates, ages, and values of unknown meaning
            return
        if action == _X:
            del parent[elem.tag]
        elif action == _Z:
            elem.value = Sequence() if elem.VR == "SQ" else ""
        elif action == _D:
            if keyword in ("PatientID", "PatientName"):
                value = pseudonym(patient_id, key) if patient_id else "ANONYMOUS"
                # a name of one component is the "retired" PN form: make it the family name
                elem.value = value + "^" if keyword == "PatientName" else value
            elif elem.VR == "SQ":
                del parent[elem.tag]
            else:
                elem.value = _DUMMY_BY_VR.get(elem.VR, "")

    _walk(out, visit)

    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = _METHOD + (", Retain UIDs" if keep_uids else "")
    codes = [("113100", "Basic Application Confidentiality Profile")]
    if keep_uids:
        codes.append(("113110", "Retain UIDs Option"))
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    out.DeidentificationMethodCodeSequence = Sequence(items)
    if "PatientID" not in out:
        out.PatientID = pseudonym(patient_id, key) if patient_id else "ANONYMOUS"
    if "PatientName" not in out:
        out.PatientName = out.PatientID + "^"
    out.LongitudinalTemporalInformationModified = "REMOVED"

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        new_meta = FileMetaDataset()
        new_meta.MediaStorageSOPClassUID = out.get("SOPClassUID", meta.get("MediaStorageSOPClassUID"))
        new_meta.MediaStorageSOPInstanceUID = out.get("SOPInstanceUID", "")
        new_meta.TransferSyntaxUID = meta.TransferSyntaxUID
        out.file_meta = new_meta
    return out


def deidentify_file(
    src: str | PathLike[str],
    folder: str | PathLike[str],
    *,
    profile: str = "basic",
    keep_uids: bool = False,
    salt: str | bytes | None = None,
) -> Path:
    """De-identify a DICOM file (pixels unchanged, same transfer syntax) into ``folder``.

    The file is written as ``<folder>/<new SOP Instance UID>.dcm`` (the folder is created if
    needed; the name passes :func:`~thoracic.dicom.safe_uid_name`) and its path returned. The
    UIDs are those :func:`thoracic.dicom.build_results` uses with ``deidentify=True`` and the
    same ``salt``, so the image and its results stay one study.

    Raises
    ------
    ReadError
        ``src`` is not a readable DICOM file.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(src)
    except (InvalidDicomError, OSError, ValueError, EOFError) as err:
        raise ReadError(f"cannot read the DICOM file to de-identify ({type(err).__name__})", path=src) from err
    anon = deidentify(ds, profile=profile, keep_uids=keep_uids, salt=salt)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    target = out / safe_uid_name(anon.SOPInstanceUID)
    tmp = target.with_name(target.name + ".part")
    anon.save_as(tmp, enforce_file_format=True)
    tmp.replace(target)
    return target
