"""Writers: DICOM Ophthalmic Tomography, DICOM Secondary Capture, Spectralis .vol."""
