"""align_api: the AlignmentJob specification shared by the operator, the trainer and alignctl."""

from .constants import (API_VERSION, CATEGORY, CRD_NAME, GROUP, KIND, PLURAL, SHORT_NAME, VERSION, Algorithm,
                        ConditionType, ExitCode, Phase, Reason)
from .graders import Grader
from .spec import AlignmentJob, AlignmentJobSpec
from .status import Condition, Status
from . import yamlio
from .validate import ManifestError, SpecError, load_file, load_text, validate_document

__all__ = [
    "API_VERSION", "CATEGORY", "CRD_NAME", "GROUP", "KIND", "PLURAL", "SHORT_NAME", "VERSION", "Algorithm",
    "AlignmentJob", "AlignmentJobSpec", "Condition", "ConditionType", "ExitCode", "Grader", "ManifestError",
    "Phase", "Reason", "SpecError", "Status", "load_file", "load_text", "validate_document", "yamlio",
]
