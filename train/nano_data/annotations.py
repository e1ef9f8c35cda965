# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Labels, questions, descriptions and captions of UniMedVL-Nano, derived from DICOM header fields and known geometry.

Closed questions have FIXED answer sets (below) so that accuracy is measurable; every answer is one exact label.
Descriptions ("Describe this image.") and generation captions are composed from the same fields.
"""

import random
import re
from dataclasses import dataclass

import numpy as np


MODALITIES = ("CT", "MRI", "X-ray", "ultrasound", "histopathology", "fundus photograph")
BODY_PARTS = ("head", "chest", "abdomen", "shoulder", "extremity", "eye")
PLANES = ("axial", "coronal", "sagittal")
CT_WINDOWS = {"brain": "brain window", "bone": "bone window", "soft-tissue": "soft-tissue window",
              "lung": "lung window"}
COLOURS = ("colour", "grayscale")

# question type -> (fixed question text, fixed answer set; None = free text)
QUESTIONS = {
    "modality": ("Which imaging modality is this?", MODALITIES),
    "body_part": ("Which body part is shown?", BODY_PARTS),
    "plane": ("In which plane is this slice?", PLANES),
    "window": ("Which CT window is used?", tuple(CT_WINDOWS.values())),
    "colour": ("Is this a colour or a grayscale image?", COLOURS),
    "describe": ("Describe this image.", None),
}

# DICOM (0008,0060) Modality -> label. NM, PT, SEG, RTIMAGE, OT, SC... have no label and are not used.
DICOM_MODALITIES = {"CT": "CT", "MR": "MRI", "CR": "X-ray", "DX": "X-ray", "XA": "X-ray", "RF": "X-ray",
                    "MG": "X-ray", "US": "ultrasound"}

# Words of BodyPartExamined / StudyDescription / SeriesDescription -> body part label.
_BODY_PART_WORDS = {"HEAD": "head", "BRAIN": "head", "SKULL": "head", "CHEST": "chest", "THORAX": "chest",
                    "LUNG": "chest", "ABDOMEN": "abdomen", "PANCREAS": "abdomen", "LIVER": "abdomen",
                    "SHOULDER": "shoulder", "EXTREMITY": "extremity", "TIBIA": "extremity", "KNEE": "extremity",
                    "HAND": "extremity", "FOOT": "extremity"}

# Ultrasound ImageType value 3 (the "region" defined terms of PS3.3 C.8.5.6.1.1) -> adjective for descriptions.
_US_REGIONS = {"OBSTETRICAL": "obstetric", "SMALL PARTS": "small-parts", "ABDOM/RAD": "abdominal",
               "ABDOMINAL": "abdominal", "EPICARDIAL": "cardiac", "TEE": "transesophageal cardiac",
               "CARDIAC": "cardiac", "PELVIC": "pelvic"}


@dataclass
class ImageFacts:
    """What is known about one stored image; every closed answer, description and caption is derived from it.

    Attributes:
        modality: one of `MODALITIES`.
        body_part: one of `BODY_PARTS` or None (unknown).
        plane: one of `PLANES` (volume slices, DICOM ImageOrientationPatient) or None.
        window: key of `CT_WINDOWS` (CT only) or None.
        colour: whether the stored image has colour content (measured on the image).
        detail: adjective phrase from the header / source documentation, e.g. "T1-weighted", "H&E-stained",
            "angiographic".
        view: "full", "zoomed" (crop of >= 3/4 of the side) or "close-up" (smaller crop or tile).
    """

    modality: str
    body_part: str | None = None
    plane: str | None = None
    window: str | None = None
    colour: bool = False
    detail: str | None = None
    view: str = "full"


# ---------------------------------------------------------------------------------------------------------------------
# From DICOM headers (`medical_io.describe_dicom` plus a few more fields)
# ---------------------------------------------------------------------------------------------------------------------


def modality_from_dicom(code: str | None) -> str | None:
    """DICOM Modality code -> label of `MODALITIES`, or None for modalities outside the fixed set."""
    return DICOM_MODALITIES.get((code or "").strip().upper())


def body_part_from_header(*fields: str | None) -> str | None:
    """First body part named, word by word, in the given header fields (BodyPartExamined, StudyDescription, ...)."""
    for text in fields:
        for word in re.findall(r"[A-Z]+", (text or "").upper()):
            if word in _BODY_PART_WORDS:
                return _BODY_PART_WORDS[word]
    return None


def plane_from_orientation(orientation, min_cosine: float = 0.9) -> str | None:
    """Anatomical plane from ImageOrientationPatient (row and column direction cosines), or None when oblique.

    The slice normal is row x column; its dominant patient axis gives the plane (x: sagittal, y: coronal,
    z: axial) if that component is at least `min_cosine`.
    """
    if orientation is None or len(orientation) != 6:
        return None
    values = np.asarray([float(v) for v in orientation])
    normal = np.abs(np.cross(values[:3], values[3:]))
    axis = int(np.argmax(normal))
    return ("sagittal", "coronal", "axial")[axis] if normal[axis] >= min_cosine else None


def ultrasound_region(image_type) -> str | None:
    """Adjective for an ultrasound image from ImageType value 3, e.g. "obstetric", or None."""
    values = list(image_type or [])
    return _US_REGIONS.get(str(values[2]).strip().upper()) if len(values) > 2 else None


# ---------------------------------------------------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------------------------------------------------


def _article(phrase: str) -> str:
    vowel_sound = phrase[0].lower() in "aeiou" or phrase.startswith(("MRI", "MR ", "X-ray", "H&E"))
    return ("an " if vowel_sound else "a ") + phrase


def _sentence(phrase: str) -> str:
    return phrase[0].upper() + phrase[1:] + "."


def _subject(facts: ImageFacts, synonym: int) -> str:
    """The noun phrase without article, e.g. "axial T1-weighted MRI slice of the head"."""
    plane = f"{facts.plane} " if facts.plane else ""
    detail = f"{facts.detail} " if facts.detail else ""
    body = f" of the {facts.body_part}" if facts.body_part else ""
    if facts.modality == "CT":
        noun = ("CT slice", "computed tomography image", "CT image")[synonym] if facts.plane else "CT image"
        window = f" in a {CT_WINDOWS[facts.window]}" if facts.window else ""
        return f"{plane}{detail}{noun}{body}{window}"
    if facts.modality == "MRI":
        noun = ("MRI slice", "magnetic resonance image", "MR image")[synonym] if facts.plane else "MRI"
        return f"{plane}{detail}{noun}{body}"
    if facts.modality == "X-ray":
        if facts.body_part == "chest":
            return f"{detail}{('chest X-ray', 'chest radiograph', 'X-ray of the chest')[synonym]}"
        return f"{detail}{('X-ray', 'radiograph', 'X-ray image')[synonym]}{body}"
    if facts.modality == "ultrasound":
        return f"{detail}{('ultrasound image', 'sonogram', 'ultrasound frame')[synonym]}{body}"
    if facts.modality == "histopathology":
        return f"{detail}{('histopathology image patch', 'histology patch', 'microscopy image of tissue')[synonym]}"
    return f"{detail}{('fundus photograph', 'retinal fundus image', 'photograph of the retina')[synonym]}"


def noun_phrase(facts: ImageFacts, synonym: int = 0) -> str:
    """Full noun phrase with article, e.g. "an axial CT slice of the head in a bone window" or, for a close-up,
    "a close-up of a chest X-ray". `synonym` (0-2) picks one of three wordings."""
    phrase = _article(_subject(facts, synonym))
    return f"a close-up of {phrase}" if facts.view == "close-up" else phrase


def describe(facts: ImageFacts) -> str:
    """The answer to "Describe this image.": the canonical noun phrase as a sentence."""
    return _sentence(noun_phrase(facts))


def caption_candidates(facts: ImageFacts) -> list[str]:
    """Text-to-image captions for the image (templated variety over the same fields)."""
    candidates = [_sentence(noun_phrase(facts, synonym)) for synonym in range(3)]
    if facts.plane and facts.view != "close-up":
        # "A T1-weighted MRI of the head, sagittal plane." / "A CT image of the head, axial plane."
        candidates.append(_sentence(f"{noun_phrase(ImageFacts(**{**vars(facts), 'plane': None}))}, "
                                    f"{facts.plane} plane"))
    return list(dict.fromkeys(candidates))


def choose_caption(facts: ImageFacts, rng: random.Random) -> str:
    """One caption of [`caption_candidates`], picked with `rng`."""
    return rng.choice(caption_candidates(facts))


def closed_answers(facts: ImageFacts) -> dict[str, str]:
    """question type -> exact answer label, for every closed question that applies to the image."""
    answers = {"modality": facts.modality, "colour": "colour" if facts.colour else "grayscale"}
    if facts.body_part:
        answers["body_part"] = facts.body_part
    if facts.plane:
        answers["plane"] = facts.plane
    if facts.window:
        answers["window"] = CT_WINDOWS[facts.window]
    for kind, answer in answers.items():
        allowed = QUESTIONS[kind][1]
        if answer not in allowed:
            raise ValueError(f"{kind} answer {answer!r} is not in the fixed answer set {allowed}.")
    return answers


__all__ = ["BODY_PARTS", "COLOURS", "CT_WINDOWS", "DICOM_MODALITIES", "ImageFacts", "MODALITIES", "PLANES",
           "QUESTIONS", "body_part_from_header", "caption_candidates", "choose_caption", "closed_answers", "describe",
           "modality_from_dicom", "noun_phrase", "plane_from_orientation", "ultrasound_region"]
