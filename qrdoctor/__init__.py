"""qrdoctor: staged diagnosis of DICOM Query/Retrieve against a real PACS."""

__version__ = "0.1.0"
