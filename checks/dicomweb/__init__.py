"""The DICOMweb stage: dicomweb.qido (QIDO-RS) and dicomweb.wado (WADO-RS)."""
