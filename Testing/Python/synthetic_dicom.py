"""Write a DWI as a classic DICOM MR series (one file per slice and volume), for dcm2niix tests.

Geometry in DICOM's LPS patient frame: ImagePositionPatient, ImageOrientationPatient (row direction =
increasing column index i, column direction = increasing row index j); diffusion in the standard tags
DiffusionBValue (0018,9087) and DiffusionGradientOrientation (0018,9089), an LPS unit vector.
"""

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from DTISynthLib.core.frames import LPS_TO_RAS


def write_dicom_series(folder, dwi, max_value=4000.0):
    """Write `dwi` (RAS gradients) as 16-bit DICOM; returns the intensity scale applied to the data."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nx, ny, nz, nv = dwi.data.shape
    lps = LPS_TO_RAS @ dwi.affine[:3, :]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    row_dir, col_dir = lps[:, 0] / spacing[0], lps[:, 1] / spacing[1]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    scale = max_value / float(dwi.data.max())
    number = 0
    for v in range(nv):
        for k in range(nz):
            number += 1
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MRImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
            ds.PatientName, ds.PatientID, ds.Modality, ds.Manufacturer = "Phantom^DTISynth", "PHANTOM", "MR", "Philips"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.SeriesNumber, ds.SeriesDescription, ds.InstanceNumber, ds.AcquisitionNumber = 7, "DWI phantom", number, 1
            ds.StudyDate = ds.SeriesDate = "20260101"
            ds.StudyTime = ds.SeriesTime = "120000"
            ds.PatientPosition, ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime = "HFS", "2D", 80, 4500
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
            ds.ImagePositionPatient = [float(x) for x in lps[:, 2] * k + lps[:, 3]]
            ds.ImageOrientationPatient = [float(x) for x in np.r_[row_dir, col_dir]]
            ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
            ds.SliceThickness = float(spacing[2])
            ds.Rows, ds.Columns = ny, nx
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.RescaleIntercept, ds.RescaleSlope = 0.0, 1.0 / scale
            ds.DiffusionBValue = float(dwi.bvals[v])
            ds.DiffusionDirectionality = "DIRECTIONAL" if dwi.bvals[v] > 0 else "NONE"
            if dwi.bvals[v] > 0:
                ds.DiffusionGradientOrientation = [float(x) for x in LPS_TO_RAS @ dwi.gradients[v]]
            ds.TemporalPositionIdentifier = v + 1
            ds.PixelData = np.round(dwi.data[:, :, k, v].T * scale).astype(np.uint16).tobytes()
            ds.save_as(folder / f"IM{number:05d}.dcm", enforce_file_format=True)
    return scale
