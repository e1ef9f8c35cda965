"""Medical VQA metric: closed-question accuracy, open-question recall, token F1 and exact match."""

import re
import string
from collections import Counter

import datasets
import evaluate

_CITATION = """\
@article{zhang2023pmcvqa,
  title   = {PMC-VQA: Visual Instruction Tuning for Medical Visual Question Answering},
  author  = {Zhang, Xiaoman and Wu, Chaoyi and Zhao, Ziheng and Lin, Weixiong and Zhang, Ya and Wang, Yanfeng and
             Xie, Weidi},
  journal = {arXiv preprint arXiv:2305.10415},
  year    = {2023}
}
@inproceedings{li2023llavamed,
  title     = {LLaVA-Med: Training a Large Language-and-Vision Assistant for Biomedicine in One Day},
  author    = {Li, Chunyuan and Wong, Cliff and Zhang, Sheng and Usuyama, Naoto and Liu, Haotian and Yang, Jianwei and
               Naumann, Tristan and Poon, Hoifung and Gao, Jianfeng},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2023}
}
@inproceedings{rajpurkar2016squad,
  title     = {SQuAD: 100,000+ Questions for Machine Comprehension of Text},
  author    = {Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle = {Proceedings of EMNLP},
  year      = {2016}
}
"""

_DESCRIPTION = """\
Scores free-text answers to medical VQA questions (SLAKE, PathVQA, VQA-RAD, OmniMedVQA, GMAI-MMBench, ...).

Every answer is first normalised: lower-cased, punctuation replaced by spaces, the articles "a", "an" and "the"
removed, whitespace collapsed.

Closed questions (yes/no or multiple choice) are scored by accuracy:
- If the reference is "yes" or "no", the prediction counts as yes/no when its first word is a yes/no word
  ("yes", "yeah", "yep", "true", "correct" / "no", "nope", "false", "incorrect"), else when exactly one of the words
  "yes" and "no" occurs in it; so "Yes.", "Yes, there is an effusion" and "There is no effusion" are understood.
- If the question has `options`, an option letter in the prediction or the reference ("B", "(b)", "B.", "B) text",
  "Answer: B", "The answer is B") is replaced by that option's text before the normalised texts are compared.
  A letter followed by a space and more words ("A mass ...") is read as text, not as a letter.
- Otherwise the normalised prediction must equal the normalised reference.

Open questions are scored over normalised word tokens, as in PMC-VQA / LLaVA-Med and SQuAD:
- recall: the share of reference tokens found in the prediction (tokens counted with multiplicity);
- F1: SQuAD token F1 of that overlap;
- exact match: normalised prediction equals normalised reference.

`accuracy` is the share of all questions answered correctly, where a closed question is correct as above and an open
question is correct on an exact match.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): model answers.
    references (`list` of `str`): ground-truth answers, one per prediction.
    answer_types (`list` of `str`, *optional*): "closed" or "open" for each question. By default a question is closed
        when its reference is "yes"/"no" or it has options, and open otherwise.
    options (`list` of `list` of `str`, *optional*): candidate answers of each question, in letter order (A, B, ...);
        `None` or `[]` for a question without options.

Returns:
    accuracy (`float`): share of all questions answered correctly (closed rule, or exact match for open questions).
    closed_accuracy (`float` or `None`): accuracy over closed questions; `None` when there are none.
    open_recall (`float` or `None`): mean token recall over open questions; `None` when there are none.
    open_f1 (`float` or `None`): mean token F1 over open questions; `None` when there are none.
    exact_match (`float`): share of all questions whose normalised prediction equals the normalised reference.
    num_questions, num_closed, num_open (`int`): counts.

Examples:
    >>> vqa = evaluate.load("medical_vqa")
    >>> vqa.compute(predictions=["Yes, there is.", "B", "left lung"], references=["yes", "Pneumonia", "right lung"],
    ...             options=[None, ["Edema", "Pneumonia"], None])["closed_accuracy"]
    1.0
"""

YES_WORDS = frozenset({"yes", "yeah", "yep", "true", "correct"})
NO_WORDS = frozenset({"no", "nope", "false", "incorrect"})
ANSWER_TYPES = ("closed", "open")

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_OPTION_LETTER = re.compile(
    r"^(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*:?\s*)?"
    r"(?:\((?P<parenthesised>[a-z])\)|(?P<bare>[a-z])(?:[.:)]|$))",
    re.IGNORECASE,
)


class InputLengthError(ValueError):
    """Predictions, references and per-question inputs do not have one entry per question."""


class EmptyInputError(ValueError):
    """There is no question to score."""


class EmptyReferenceError(ValueError):
    """A reference answer is empty after normalisation."""


class AnswerTypeError(ValueError):
    """An answer type is neither "closed" nor "open"."""


def normalize_answer(text: str) -> str:
    """Lower-case, replace punctuation by spaces, drop articles and collapse whitespace."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def parse_yes_no(normalized: str):
    """Return "yes"/"no" for a normalised answer that says yes or no, else `None`."""
    tokens = normalized.split()
    if not tokens:
        return None
    if tokens[0] in YES_WORDS:
        return "yes"
    if tokens[0] in NO_WORDS:
        return "no"
    said = {token for token in tokens if token in ("yes", "no")}
    return said.pop() if len(said) == 1 else None


def resolve_option(answer: str, options) -> str:
    """Replace an option letter ("B", "(b)", "B.", "Answer: B") by the text of that option."""
    if options:
        match = _OPTION_LETTER.match(answer.strip())
        if match:
            letter = (match.group("parenthesised") or match.group("bare")).lower()
            index = ord(letter) - ord("a")
            if index < len(options):
                return options[index]
    return answer


def closed_correct(prediction: str, reference: str, options) -> bool:
    """Whether a closed-question prediction matches its reference (yes/no synonyms, option letters)."""
    predicted = normalize_answer(resolve_option(prediction, options))
    expected = normalize_answer(resolve_option(reference, options))
    if expected in ("yes", "no"):
        return parse_yes_no(predicted) == expected
    return predicted == expected


def token_recall_f1(prediction: str, reference: str):
    """Return (recall, F1) of the normalised prediction tokens against the normalised reference tokens."""
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(reference).split()
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    if overlap == 0:
        return 0.0, 0.0
    recall = overlap / len(expected)
    precision = overlap / len(predicted)
    return recall, 2 * precision * recall / (precision + recall)


def _mean(values):
    return sum(values) / len(values) if values else None


def _check_lengths(name, values, expected):
    if values is not None and len(values) != expected:
        raise InputLengthError(f"{name} has {len(values)} entries but there are {expected} predictions.")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MedicalVQA(evaluate.Metric):
    """Closed-question accuracy and open-question recall / F1 / exact match for medical VQA."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://arxiv.org/abs/2305.10415", "https://arxiv.org/abs/2306.00890"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of answers, after checking that predictions and references pair up."""
        if predictions is not None and references is not None and len(predictions) != len(references):
            raise InputLengthError(f"Got {len(predictions)} predictions but {len(references)} references.")
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, answer_types=None, options=None):
        if not references:
            raise EmptyInputError("No questions to score: predictions and references are empty.")
        _check_lengths("answer_types", answer_types, len(predictions))
        _check_lengths("options", options, len(predictions))
        options = options or [None] * len(predictions)
        answer_types = answer_types or [
            self._default_answer_type(ref, opts) for ref, opts in zip(references, options, strict=True)
        ]

        correct, exact, closed, recalls, f1s = [], [], [], [], []
        for index, (prediction, reference, answer_type, opts) in enumerate(
            zip(predictions, references, answer_types, options, strict=True)
        ):
            if not normalize_answer(reference):
                raise EmptyReferenceError(f"Reference {index} ({reference!r}) is empty after normalisation.")
            if answer_type not in ANSWER_TYPES:
                raise AnswerTypeError(f"answer_types[{index}] is {answer_type!r}; expected one of {ANSWER_TYPES}.")
            exact.append(normalize_answer(prediction) == normalize_answer(reference))
            if answer_type == "closed":
                closed.append(closed_correct(prediction, reference, opts))
                correct.append(closed[-1])
            else:
                recall, f1 = token_recall_f1(prediction, reference)
                recalls.append(recall)
                f1s.append(f1)
                correct.append(exact[-1])

        return {
            "accuracy": _mean(correct),
            "closed_accuracy": _mean(closed),
            "open_recall": _mean(recalls),
            "open_f1": _mean(f1s),
            "exact_match": _mean(exact),
            "num_questions": len(correct),
            "num_closed": len(closed),
            "num_open": len(recalls),
        }

    @staticmethod
    def _default_answer_type(reference: str, options) -> str:
        return "closed" if options or normalize_answer(reference) in ("yes", "no") else "open"
