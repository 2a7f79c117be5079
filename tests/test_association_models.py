"""The association checks probe the Query/Retrieve models by UID without importing a DICOM
library (a monitoring run that stops there loads none): their table must be the standard's, as
pynetdicom knows it."""

from __future__ import annotations

from pynetdicom import sop_class as sc

from qrdoctor.checks.association import MODELS
from qrdoctor.dicom.probe import VERIFICATION

NAMES = {"patient_root": "PatientRoot", "study_root": "StudyRoot", "patient_study_only": "PatientStudyOnly"}


def test_the_models_table_is_pynetdicoms():
    for key, (_label, operations) in MODELS.items():
        for op, uid in operations.items():
            expected = getattr(sc, f"{NAMES[key]}QueryRetrieveInformationModel{op.capitalize()}")
            assert uid == str(expected), (key, op)
    assert VERIFICATION == str(sc.Verification)
    assert len({uid for _label, ops in MODELS.values() for uid in ops.values()}) == 9
