"""``harness decide``: the migration decision against the design's success criteria.

A decision file (``scenarios/migration.yaml``) names criteria and their evidence; :func:`decide`
gathers the evidence (runs it through the library, or reuses a folder of it), judges every
criterion met / not met / unknown and writes ``decision.json`` (:class:`Decision`) and
``decision.html``. Modules: ``spec`` (the file), ``evidence`` (typed readers and layout),
``criteria`` (the judges), ``execute`` (gather and write), ``model`` (decision.json), ``page``.
"""

from .execute import DecisionOutcome, decide
from .model import Criterion, Decision, Outcome, Status
from .spec import DecisionError, DecisionFile, is_decision_file, load_decision

__all__ = [
    "Criterion",
    "Decision",
    "DecisionError",
    "DecisionFile",
    "DecisionOutcome",
    "Outcome",
    "Status",
    "decide",
    "is_decision_file",
    "load_decision",
]
