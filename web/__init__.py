"""The HTTP layer: DICOMweb routes, the viewer's static files, settings and the CLI."""
