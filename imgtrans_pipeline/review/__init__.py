"""The review loop's backend: the quality gate's queue, re-renders from stored artifacts, decisions, and the
CSV/XLIFF round trip for outside translators. Plain Python (no web code): a review page calls ``ReviewService``.

* :mod:`.state` — ``review.json`` per request, the review index, revisions and the per-request lock;
* :mod:`.rerender` — a new revision from the stored artifacts and a reviewer's block edits (the Dagster op
  ``rerender`` runs it through the stage runner);
* :mod:`.actions` — approve / reject, delivered through the Redis intake when the request came from it;
* :mod:`.exchange` — ``imgtrans export`` / ``imgtrans import``;
* :mod:`.service` — ``ReviewService``: all of it over one configuration.
"""

from .rerender import BlockEdit, RerenderResult
from .state import ReviewError, RevisionConflict, UnknownBlock, UnknownRequest, WrongState

__all__ = ["BlockEdit", "RerenderResult", "ReviewError", "RevisionConflict", "UnknownBlock", "UnknownRequest",
           "WrongState"]
