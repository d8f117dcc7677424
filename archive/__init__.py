"""The archive: storage of DICOM files, the index of their attributes, ingest and queries. No HTTP."""
