"""carepath's functional core: intake -> facts -> cited rules -> draft care plan.

Pure: no web, database, template or PDF imports. The public door is this module.
"""

from .errors import CarepathError, EngineError, FieldProblem, IntakeError, RulePackError
from .evaluate import Engine, check_plan
from .intake import Intake, intake_sha256, parse_intake_json, parse_intake_obj
from .plan import DRAFT_NOTICE, CarePlan
from .rulepack import RulePack, load_rulepack

__all__ = [
    "CarePlan",
    "CarepathError",
    "DRAFT_NOTICE",
    "Engine",
    "EngineError",
    "FieldProblem",
    "Intake",
    "IntakeError",
    "RulePack",
    "RulePackError",
    "check_plan",
    "intake_sha256",
    "load_rulepack",
    "parse_intake_json",
    "parse_intake_obj",
]
