"""Tests for `unimedvl.modeling.medical_io` on real files: pydicom's bundled test data, nibabel volumes, PIL images."""

import copy
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.pixels import (  # noqa: E402
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    convert_color_space,
    pixel_array,
)
from unimedvl.modeling.medical_io import (  # noqa: E402
    WINDOW_PRESETS,
    MedicalImageError,
    apply_window,
    describe_dicom,
    dicom_to_array,
    is_dicom_path,
    is_nifti_path,
    load_image,
    nifti_to_array,
    to_uint8_minmax,
)

MODULE_PATH = pathlib.Path(__file__).resolve().parents[1] / "modeling_unimedvl" / "medical_io.py"
FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference_tiny"

CT = get_testdata_file("CT_small.dcm")  # MONOCHROME2, signed, slope 1 / intercept -1024, no header window
MR = get_testdata_file("MR_small.dcm")  # MONOCHROME2, signed, header window 600 / 1600
CR = get_testdata_file("6154")  # dicomdirtests/.../CR1/6154: MONOCHROME1, slope 0.684, intercept 200, window 1600/2800
RTDOSE = get_testdata_file("rtdose.dcm")  # 15 frames, 32-bit unsigned
RGB_2FRAME = get_testdata_file("SC_rgb_rle_2frame.dcm")
RGB_16BIT = get_testdata_file("SC_rgb_rle_16bit.dcm")
PALETTE = get_testdata_file("examples_palette.dcm")
YBR = get_testdata_file("SC_ybr_full_422_uncompressed.dcm")
OVERLAY = get_testdata_file("examples_overlay.dcm")  # two header windows: the first one must be used
JPEG_LS = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
RTPLAN = get_testdata_file("rtplan.dcm")  # no pixel data


def rgb(image: Image.Image) -> np.ndarray:
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    return np.asarray(image)


def grey(image: Image.Image) -> np.ndarray:
    """The single grey channel of an RGB image whose three channels must be equal."""
    array = rgb(image)
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()
    return array[..., 0]


def read(path):
    return pydicom.dcmread(path)


def voi_reference_uint8(path_or_ds) -> np.ndarray:
    """Header window computed directly with pydicom, mapped from pydicom's documented output range to 8 bit."""
    ds = path_or_ds if isinstance(path_or_ds, pydicom.Dataset) else read(path_or_ds)
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0)
    if "VOILUTSequence" in ds:
        y_min, y_max = min(ds.VOILUTSequence[0].LUTData), max(ds.VOILUTSequence[0].LUTData)  # actual LUT range
    elif ds.PixelRepresentation == 0:
        y_min, y_max = 0.0, 2.0**ds.BitsStored - 1
    else:
        y_min, y_max = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
    if "RescaleSlope" in ds:
        y_min, y_max = (y * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for y in (y_min, y_max))
    expected = np.floor(np.clip((voi - y_min) / (y_max - y_min), 0, 1) * 255 + 0.5).astype(np.uint8)
    return 255 - expected if ds.PhotometricInterpretation == "MONOCHROME1" else expected


# ---------------------------------------------------------------------------------------------------------------------
# Reference images and agreement with pydicom
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, window, fixture", [(CT, (40, 400), "ct_small.png"), (MR, (600, 1600), "mr_small.png")])
def test_matches_reference_png(path, window, fixture):
    reference_path = FIXTURES / "images" / fixture
    if not reference_path.is_file():
        pytest.skip(f"reference fixture {reference_path} is absent (shared/fixtures not checked out)")
    reference = np.asarray(Image.open(reference_path).convert("RGB"))
    np.testing.assert_array_equal(rgb(load_image(path, window=window)), reference)


@pytest.mark.parametrize("path", [CT, MR, CR])
def test_dicom_to_array_is_pydicom_modality_lut(path):
    ds = read(path)
    values = dicom_to_array(ds)
    assert values.dtype == np.float64 and values.shape == (ds.Rows, ds.Columns)
    np.testing.assert_array_equal(values, apply_modality_lut(ds.pixel_array, ds))
    np.testing.assert_array_equal(dicom_to_array(path), values)  # paths are accepted too


@pytest.mark.parametrize("path", [MR, CR, OVERLAY])
def test_header_window_is_pydicom_apply_voi_lut(path):
    np.testing.assert_array_equal(grey(load_image(path)), voi_reference_uint8(path))
    np.testing.assert_array_equal(grey(load_image(path, window="auto")), voi_reference_uint8(path))


def test_header_sigmoid_window_and_voi_lut_sequence():
    ds = read(MR)
    ds.VOILUTFunction = "SIGMOID"
    np.testing.assert_array_equal(grey(load_image(ds)), voi_reference_uint8(ds))

    ds = read(MR)
    item = pydicom.Dataset()
    item.LUTDescriptor = [4096, 0, 16]  # 4096 entries, first mapped value 0, 16-bit output
    item.LUTData = [4095 - v for v in range(4096)]  # 12-bit values in a 16-bit LUT, inverting
    ds.VOILUTSequence = [item]  # preferred over the WindowCenter / WindowWidth also present
    expected = voi_reference_uint8(ds)
    assert len(np.unique(expected)) > 50
    np.testing.assert_array_equal(grey(load_image(ds)), expected)


def test_no_header_window_falls_back_to_minmax():
    values = apply_modality_lut(read(CT).pixel_array, read(CT))
    expected = np.floor((values - values.min()) / (values.max() - values.min()) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(grey(load_image(CT)), expected)


def test_explicit_window_uses_exact_formula_after_modality_lut():
    values = dicom_to_array(CT)
    expected = np.floor(np.clip((values - (-600 - 750)) / 1500, 0, 1) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(grey(load_image(CT, window="lung")), expected)
    np.testing.assert_array_equal(grey(load_image(CT, window=(-600, 1500))), expected)


def test_enhanced_functional_groups_rescale_is_used():
    # Enhanced CT stores RescaleSlope/Intercept in the functional groups instead of the top level.
    ds = read(CT)
    transform = pydicom.Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = ds.RescaleSlope, ds.RescaleIntercept
    transform.RescaleType = "HU"
    shared = pydicom.Dataset()
    shared.PixelValueTransformationSequence = [transform]
    enhanced = copy.deepcopy(ds)
    del enhanced.RescaleSlope, enhanced.RescaleIntercept
    enhanced.SharedFunctionalGroupsSequence = [shared]
    np.testing.assert_array_equal(dicom_to_array(enhanced), dicom_to_array(ds))
    np.testing.assert_array_equal(rgb(load_image(enhanced, window="brain")), rgb(load_image(ds, window="brain")))
    assert "RescaleSlope" not in enhanced  # the caller's dataset is not modified


# ---------------------------------------------------------------------------------------------------------------------
# Photometric interpretations, frames, colour
# ---------------------------------------------------------------------------------------------------------------------


def test_monochrome1_is_inverted():
    ds = read(CR)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    values = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(grey(load_image(ds, window=(1300, 1400))), 255 - apply_window(values, 1300, 1400))
    np.testing.assert_array_equal(grey(load_image(ds, window="mr")), 255 - grey(load_image(values, window="mr")))


def test_multiframe_selection_and_range_error():
    ds = read(RTDOSE)
    frames = ds.pixel_array
    assert frames.shape[0] == 15
    np.testing.assert_array_equal(dicom_to_array(ds), frames[7])  # default: middle frame
    np.testing.assert_array_equal(dicom_to_array(ds, frame_index=0), frames[0])
    np.testing.assert_array_equal(grey(load_image(RTDOSE, frame_index=14)), to_uint8_minmax(frames[14]))
    for bad in (15, -1, 1.5):
        with pytest.raises(MedicalImageError, match=r"frame_index.*\[0, 14\]"):
            load_image(RTDOSE, frame_index=bad)


def test_colour_dicom_multiframe_rgb():
    frames = read(RGB_2FRAME).pixel_array
    assert frames.dtype == np.uint8 and frames.shape == (2, 100, 100, 3)
    np.testing.assert_array_equal(rgb(load_image(RGB_2FRAME, frame_index=1)), frames[1])
    np.testing.assert_array_equal(rgb(load_image(RGB_2FRAME, frame_index=1, window="lung")), frames[1])  # no window


def test_colour_dicom_16bit_palette_and_ybr():
    ds = read(RGB_16BIT)
    expected = np.floor(ds.pixel_array / 65535 * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(rgb(load_image(ds)), expected)

    ds = read(PALETTE)
    lut = apply_color_lut(ds.pixel_array, ds)
    expected = lut if lut.dtype == np.uint8 else np.floor(lut / 65535 * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(rgb(load_image(ds)), expected)

    ds = read(YBR)
    expected = convert_color_space(pixel_array(ds, raw=True), "YBR_FULL_422", "RGB")
    np.testing.assert_array_equal(dicom_to_array(ds), expected)
    np.testing.assert_array_equal(rgb(load_image(YBR)), expected)


def test_describe_dicom():
    info = describe_dicom(CT)
    assert info["Modality"] == "CT" and info["PhotometricInterpretation"] == "MONOCHROME2"
    assert info["Rows"] == 128 and info["Columns"] == 128 and info["NumberOfFrames"] is None
    assert info["PatientID"] == "1CT1" and info["ViewPosition"] is None
    assert set(info) == {
        "Modality", "BodyPartExamined", "SeriesDescription", "StudyDescription", "ViewPosition",
        "PhotometricInterpretation", "Rows", "Columns", "NumberOfFrames", "PatientID",
    }  # fmt: skip
    assert all(value is None or type(value) in (str, int) for value in info.values())
    assert describe_dicom(read(RTDOSE))["NumberOfFrames"] == 15


# ---------------------------------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------------------------------


def test_suffixless_dicom_detected_by_magic(tmp_path):
    target = tmp_path / "IM000001"
    shutil.copy(CT, target)
    assert is_dicom_path(target) and is_dicom_path(str(target))
    assert not is_dicom_path(tmp_path / "missing") and is_dicom_path(tmp_path / "missing.DCM")
    np.testing.assert_array_equal(rgb(load_image(target, window="brain")), rgb(load_image(CT, window="brain")))


def test_dicom_without_preamble(tmp_path):
    # A raw dataset (no 128-byte preamble, no file meta) as written by some old systems.
    ds = read(MR)
    ds.preamble, ds.file_meta = None, pydicom.dataset.FileMetaDataset()
    target = tmp_path / "raw.dcm"
    pydicom.dcmwrite(target, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert not is_dicom_path(tmp_path / "raw")  # no magic
    np.testing.assert_array_equal(rgb(load_image(target, window=(600, 1600))), rgb(load_image(MR, window=(600, 1600))))


def test_png_and_tiff_paths(tmp_path):
    values = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    Image.fromarray(values).save(tmp_path / "gray16.png")
    np.testing.assert_array_equal(grey(load_image(tmp_path / "gray16.png")), to_uint8_minmax(values))

    pages = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    pages[0].save(tmp_path / "pages.tiff", save_all=True, append_images=pages[1:])
    assert rgb(load_image(tmp_path / "pages.tiff"))[0, 0].tolist() == [255, 0, 0]
    assert rgb(load_image(tmp_path / "pages.tiff", frame_index=1))[0, 0].tolist() == [0, 255, 0]
    with pytest.raises(MedicalImageError, match=r"frame_index.*\[0, 1\]"):
        load_image(tmp_path / "pages.tiff", frame_index=2)
    assert is_nifti_path("a/b.NII.GZ") and is_nifti_path("x.nii") and not is_nifti_path("x.nii.zip")


# ---------------------------------------------------------------------------------------------------------------------
# PIL images and arrays
# ---------------------------------------------------------------------------------------------------------------------


def test_rgba_la_and_palette_transparency_composited_on_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 0)  # fully transparent -> white
    rgba[0, 1] = (10, 20, 30, 255)  # opaque -> itself
    rgba[1, 0] = (0, 0, 0, 128)  # half transparent black -> mid grey
    out = rgb(load_image(Image.fromarray(rgba, mode="RGBA")))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [10, 20, 30]
    assert 120 <= out[1, 0, 0] <= 135
    np.testing.assert_array_equal(rgb(load_image(rgba)), out)  # (H, W, 4) arrays behave the same

    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), mode="LA")
    assert rgb(load_image(la)).tolist() == [[[255, 255, 255], [0, 0, 0]]]

    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert rgb(load_image(palette)).tolist() == [[[255, 255, 255], [200, 0, 0]]]


def test_16bit_and_float_pil_modes_are_not_clipped():
    values = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # 0 .. 65535
    expected = to_uint8_minmax(values)
    assert expected.min() == 0 and expected.max() == 255 and len(np.unique(expected)) == 256
    np.testing.assert_array_equal(grey(load_image(Image.fromarray(values))), expected)  # I;16
    np.testing.assert_array_equal(grey(load_image(Image.fromarray(values.astype(np.int32)))), expected)  # I
    np.testing.assert_array_equal(grey(load_image(Image.fromarray(values.astype(np.float32)))), expected)  # F
    windowed = grey(load_image(Image.fromarray(values), window=(1000, 2000)))
    np.testing.assert_array_equal(windowed, apply_window(values, 1000, 2000))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int32, np.float32, np.float64])
def test_deep_arrays_minmax_or_window(dtype):
    values = (np.arange(64).reshape(8, 8) * 50 - 1000).astype(dtype)
    out = grey(load_image(values))
    np.testing.assert_array_equal(out, to_uint8_minmax(values))
    assert out.min() == 0 and out.max() == 255
    np.testing.assert_array_equal(grey(load_image(values, window=(40, 400))), apply_window(values, 40, 400))


def test_grayscale_inputs_become_three_equal_channels():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(grey(load_image(values)), values)  # uint8 used as is
    np.testing.assert_array_equal(grey(load_image(values[..., None])), values)  # (H, W, 1)
    np.testing.assert_array_equal(grey(load_image(Image.fromarray(values))), values)  # mode L
    np.testing.assert_array_equal(grey(load_image(values > 127)), np.where(values > 127, 255, 0))  # bool
    image = Image.fromarray(np.stack([values] * 3, axis=-1))
    out = load_image(image)
    assert out is not image and out.size == (16, 16)


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    values = np.linspace(-1, 1, 48, dtype=np.float32).reshape(4, 4, 3)
    np.testing.assert_array_equal(rgb(load_image(torch.from_numpy(values))), rgb(load_image(values)))
    assert load_image(torch.zeros(4, 4, dtype=torch.bfloat16)).size == (4, 4)


def test_apply_window_formula_and_minmax_edge_cases():
    values = np.array([-160.0, -159.0, 40.0, 239.0, 240.0, np.nan, np.inf, -np.inf])
    expected = [0, 1, 128, 254, 255, 0, 255, 0]  # floor(clip((v + 160) / 400, 0, 1) * 255 + 0.5)
    assert apply_window(values, 40, 400).tolist() == expected
    assert to_uint8_minmax(np.full((3, 3), 7.5)).tolist() == [[0] * 3] * 3  # constant image -> 0
    assert to_uint8_minmax(np.array([np.nan, 1.0, 3.0])).tolist() == [0, 0, 255]


def test_window_presets_and_percentile_window():
    assert WINDOW_PRESETS["brain"] == (40, 80) and WINDOW_PRESETS["lung"] == (-600, 1500)
    for name in ("subdural", "stroke", "soft-tissue", "abdomen", "liver", "mediastinum", "bone", "auto", "mr"):
        assert name in WINDOW_PRESETS
    values = np.arange(1000, dtype=np.float64).reshape(25, 40)
    low, high = np.percentile(values, [1, 99])
    expected = np.floor(np.clip((values - low) / (high - low), 0, 1) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(grey(load_image(values, window="mr")), expected)
    np.testing.assert_array_equal(grey(load_image(values, window="soft_tissue")), apply_window(values, 40, 400))


# ---------------------------------------------------------------------------------------------------------------------
# NIfTI
# ---------------------------------------------------------------------------------------------------------------------


def make_volume() -> np.ndarray:
    """(X=6, Y=7, Z=5) RAS volume; voxel (5, 6, z) is the most right-anterior one, its value encodes z."""
    volume = np.zeros((6, 7, 5), dtype=np.float32)
    for z in range(5):
        volume[5, 6, z] = 100 + z  # right, anterior
        volume[0, 0, z] = 50  # left, posterior
    return volume


def test_nifti_slice_orientation_and_shape(tmp_path):
    volume = make_volume()
    path = tmp_path / "ras.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), path)

    axial = nifti_to_array(path)  # default: axis 2, middle slice z = 2
    assert axial.shape == (7, 6) and axial.dtype == np.float64  # rows = anterior -> posterior, cols = right -> left
    assert axial[0, 0] == 102 and axial[-1, -1] == 50  # anterior-right at top-left (radiological convention)
    assert nifti_to_array(path, slice_index=4)[0, 0] == 104

    coronal = nifti_to_array(path, slice_index=6, axis=1)  # most anterior coronal plane
    assert coronal.shape == (5, 6) and coronal[0, 0] == 104  # superior at top, patient's right on the left
    sagittal = nifti_to_array(path, slice_index=5, axis=0)  # rightmost sagittal plane
    assert sagittal.shape == (5, 7) and sagittal[0, 0] == 104  # superior at top, anterior on the left

    out = grey(load_image(path, slice_index=4))
    assert out.shape == (7, 6) and out[0, 0] == 255 and out[-1, -1] == round(50 / 104 * 255)
    assert load_image(nibabel.load(path), slice_index=4) == load_image(path, slice_index=4)


def test_nifti_is_reoriented_to_canonical(tmp_path):
    # Same anatomy stored left-right flipped (LAS): the displayed slice must be identical.
    volume = make_volume()
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[0, 3] = volume.shape[0] - 1
    nibabel.save(nibabel.Nifti1Image(volume[::-1].copy(), affine), tmp_path / "las.nii")
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "ras.nii")
    np.testing.assert_array_equal(nifti_to_array(tmp_path / "las.nii"), nifti_to_array(tmp_path / "ras.nii"))


def test_nifti_4d_uses_first_volume_and_errors(tmp_path):
    volume = make_volume()
    series = np.stack([volume, volume * 0 + 1], axis=-1)
    img = nibabel.Nifti1Image(series, np.eye(4))
    np.testing.assert_array_equal(nifti_to_array(img), nifti_to_array(nibabel.Nifti1Image(volume, np.eye(4))))
    with pytest.raises(MedicalImageError, match=r"slice_index.*\[0, 4\]"):
        load_image(img, slice_index=5)
    with pytest.raises(MedicalImageError, match="axis"):
        load_image(img, axis=3)
    with pytest.raises(MedicalImageError, match="frame_index"):
        load_image(img, frame_index=0)


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------


def test_file_errors(tmp_path):
    with pytest.raises(MedicalImageError, match="image: file not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(MedicalImageError, match="image: .*directory"):
        load_image(tmp_path)
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MedicalImageError, match="image: could not read .*DICOM"):
        load_image(corrupt)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(MedicalImageError, match="image: could not read"):
        load_image(tmp_path / "corrupt.png")
    (tmp_path / "corrupt.nii.gz").write_bytes(b"garbage")
    with pytest.raises(MedicalImageError, match="image: could not read .*NIfTI"):
        load_image(tmp_path / "corrupt.nii.gz")


def test_dicom_errors():
    with pytest.raises(MedicalImageError, match="image: .*no pixel data"):
        load_image(RTPLAN)
    with pytest.raises(MedicalImageError, match="image: .*pip install pylibjpeg"):
        load_image(JPEG_LS)
    with pytest.raises(MedicalImageError, match="image: could not decode"):
        load_image(get_testdata_file("MR_truncated.dcm"))
    with pytest.raises(MedicalImageError, match="slice_index"):
        load_image(CT, slice_index=0)


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 4, 2)), np.zeros((3, 8, 8, 1, 1)), np.zeros((3, 8, 8)), np.zeros(5), np.zeros((4, 4), complex),
     np.array([["a"]])],
)  # fmt: skip
def test_bad_arrays(array):
    with pytest.raises(MedicalImageError, match="image: unsupported array"):
        load_image(array)


@pytest.mark.parametrize("window", ["lungs", (40, 0), (40, -5), (1, 2, 3), ("a", "b"), 40, (np.nan, 10), (True, 2)])
def test_bad_windows(window):
    with pytest.raises(MedicalImageError, match="window"):
        load_image(np.zeros((4, 4), np.uint16), window=window)


def test_bad_input_type_and_is_value_error():
    with pytest.raises(MedicalImageError, match="image: unsupported input type"):
        load_image([[0, 1], [2, 3]])
    assert issubclass(MedicalImageError, ValueError)


def test_module_imports_only_numpy_and_pil_at_top():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('medical_io', {str(MODULE_PATH)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(sorted(m for m in ('pydicom', 'nibabel', 'torch') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
