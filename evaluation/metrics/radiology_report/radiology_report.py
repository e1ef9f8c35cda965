"""Radiology report generation metric: BLEU-1..4, ROUGE-L, METEOR and CIDEr (pycocoevalcap) plus sacreBLEU."""

import re
import shutil

import datasets
import evaluate
import sacrebleu
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

_CITATION = """\
@inproceedings{papineni2002bleu,
  title     = {BLEU: a Method for Automatic Evaluation of Machine Translation},
  author    = {Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle = {Proceedings of ACL},
  year      = {2002}
}
@inproceedings{lin2004rouge,
  title     = {ROUGE: A Package for Automatic Evaluation of Summaries},
  author    = {Lin, Chin-Yew},
  booktitle = {Text Summarization Branches Out},
  year      = {2004}
}
@inproceedings{denkowski2014meteor,
  title     = {Meteor Universal: Language Specific Translation Evaluation for Any Target Language},
  author    = {Denkowski, Michael and Lavie, Alon},
  booktitle = {Proceedings of the Ninth Workshop on Statistical Machine Translation},
  year      = {2014}
}
@inproceedings{vedantam2015cider,
  title     = {CIDEr: Consensus-based Image Description Evaluation},
  author    = {Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle = {Proceedings of CVPR},
  year      = {2015}
}
@inproceedings{post2018sacrebleu,
  title     = {A Call for Clarity in Reporting {BLEU} Scores},
  author    = {Post, Matt},
  booktitle = {Proceedings of the Third Conference on Machine Translation},
  year      = {2018}
}
"""

_DESCRIPTION = """\
Natural-language generation metrics for radiology report generation (IU X-ray, MIMIC-CXR, ...), computed by the
COCO caption evaluation code (pycocoevalcap) as in the report-generation literature.

Tokenisation: every text is lower-cased and split into maximal runs of Unicode letters and digits; everything else
(punctuation, hyphens, decimal points) separates tokens and is dropped, so "No pleural effusion." becomes
"no pleural effusion" and "1.5-cm" becomes "1 5 cm". The token lists, joined by spaces, are scored by:
- BLEU-1..4: pycocoevalcap `Bleu(4)`, corpus level, "closest" reference length for the brevity penalty;
- ROUGE-L: pycocoevalcap `Rouge` (LCS F-measure with beta = 1.2, best reference, averaged over reports);
- METEOR: pycocoevalcap `Meteor` (Meteor 1.5 jar, English, `-norm`, bundled paraphrase table). It needs a Java
  runtime on PATH; without one `meteor` is `None` and `unavailable["meteor"]` says why;
- CIDEr: pycocoevalcap `Cider` (CIDEr-D: n = 1..4, Gaussian length penalty sigma = 6, clipped counts, x10). Its IDF
  weights come from the references being scored, so it is only meaningful over a whole test set (with a single
  report every IDF is zero).
As a cross-check, `sacrebleu` is sacreBLEU's corpus BLEU-4 on the raw texts (its own 13a tokenisation,
`lowercase=True`), divided by 100 to share the 0-1 scale of the other scores; `sacrebleu_signature` records its
settings. All scores are in [0, 1] except CIDEr, which is in [0, 10].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated reports.
    references (`list` of `str` or `list` of `list` of `str`): one reference report, or several, per prediction.
    meteor (`bool`, *optional*, defaults to `True`): compute METEOR (starts a Java process, about 10 s).

Returns:
    bleu_1, bleu_2, bleu_3, bleu_4 (`float`): corpus BLEU-n (pycocoevalcap).
    rouge_l (`float`): mean ROUGE-L (pycocoevalcap).
    meteor (`float` or `None`): corpus METEOR (pycocoevalcap), `None` when not computed.
    cider (`float`): CIDEr-D (pycocoevalcap).
    sacrebleu (`float`): sacreBLEU corpus BLEU-4 / 100.
    sacrebleu_signature (`str`): sacreBLEU settings.
    unavailable (`dict`): sub-metric name -> reason it was not computed (empty when all were).

Examples:
    >>> report = evaluate.load("radiology_report")
    >>> report.compute(predictions=["no acute cardiopulmonary abnormality"],
    ...                references=["no acute cardiopulmonary abnormality"], meteor=False)["bleu_4"]
    1.0
"""

_TOKEN = re.compile(r"[^\W_]+")


class InputLengthError(ValueError):
    """Predictions and references do not pair up one to one."""


class EmptyInputError(ValueError):
    """There is no report to score."""


class EmptyReferenceError(ValueError):
    """A prediction has no reference, or a reference has no word."""


def tokenize(text: str) -> str:
    """Lower-case `text` and keep its runs of letters and digits, joined by single spaces."""
    return " ".join(_TOKEN.findall(text.lower()))


def _as_reference_lists(references):
    return [[reference] if isinstance(reference, str) else list(reference) for reference in references]


def _check_references(references):
    for index, reference_list in enumerate(references):
        if not reference_list:
            raise EmptyReferenceError(f"Prediction {index} has no reference.")
        for reference in reference_list:
            if not tokenize(reference):
                raise EmptyReferenceError(f"Reference {reference!r} of prediction {index} has no word.")


def _meteor(gts, res):
    """Return (corpus METEOR, None), or (None, reason) when the Java-based scorer cannot run."""
    if shutil.which("java") is None:
        return None, "METEOR runs pycocoevalcap's meteor-1.5.jar, which needs a Java runtime; none is on PATH."
    scorer = Meteor()
    try:
        score, _ = scorer.compute_score(gts, res)
    except (OSError, ValueError) as error:
        return None, f"pycocoevalcap's METEOR process failed: {error!r}"
    finally:
        del scorer
    return float(score), None


def _sacrebleu(predictions, references):
    """sacreBLEU corpus BLEU on raw texts; references padded with `None` to equal-length streams."""
    depth = max(len(reference_list) for reference_list in references)
    streams = [
        [reference_list[k] if k < len(reference_list) else None for reference_list in references] for k in range(depth)
    ]
    bleu = sacrebleu.metrics.BLEU(lowercase=True)
    return bleu.corpus_score(predictions, streams).score / 100, str(bleu.get_signature())


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RadiologyReport(evaluate.Metric):
    """BLEU-1..4, ROUGE-L, METEOR, CIDEr (pycocoevalcap) and sacreBLEU for generated radiology reports."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            codebase_urls=["https://github.com/salaniz/pycocoevalcap", "https://github.com/mjpost/sacrebleu"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a non-empty batch of reports, after checking that predictions and references pair up."""
        if predictions is not None and references is not None and len(predictions) != len(references):
            raise InputLengthError(f"Got {len(predictions)} predictions but {len(references)} references.")
        if predictions is not None and len(predictions) == 0:
            raise EmptyInputError("No reports to score: predictions and references are empty.")
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, meteor=True):
        references = _as_reference_lists(references)
        _check_references(references)
        res = {index: [tokenize(prediction)] for index, prediction in enumerate(predictions)}
        gts = {
            index: [tokenize(reference) for reference in reference_list]
            for index, reference_list in enumerate(references)
        }

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        rouge_l, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
        meteor_score, meteor_reason = _meteor(gts, res) if meteor else (None, "disabled by meteor=False")
        sacrebleu_score, signature = _sacrebleu(predictions, references)

        return {
            **{f"bleu_{n}": float(score) for n, score in enumerate(bleu, start=1)},
            "rouge_l": float(rouge_l),
            "meteor": meteor_score,
            "cider": float(cider),
            "sacrebleu": sacrebleu_score,
            "sacrebleu_signature": signature,
            "unavailable": {} if meteor_reason is None else {"meteor": meteor_reason},
        }
