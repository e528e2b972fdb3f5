"""Redis intake: the queue producers write to, and everything the pipeline writes back.

Plain Python (no Dagster): the intake sensor, the CLI and tests all use this API.

* :mod:`.queue` — claim / pending / ack over a list (``LMOVE``) or a stream (consumer group), crash-safe;
* :mod:`.messages` — the message contract (``parse_message``; JSON Schema in ``schema/request.schema.json``);
* :mod:`.dead` — dead letters with the original payload, atomic bury and operator requeue;
* :mod:`.status` — the per-request status hash (``imgtrans:request:<id>``);
* :mod:`.delivery` — results list and signed webhooks;
* :mod:`.lease` — one intake tick at a time across processes.

Every operation is safe to interrupt between any two Redis commands and to repeat: moves between keys happen
inside single Lua scripts or MULTI/EXEC blocks, and claimed work stays visible until acknowledged.
"""

from .config import IntakeConfig
from .dead import DeadLetters
from .delivery import DeliveryOutcome, WebhookSender, encode_body, push_result, sign, verify_signature
from .lease import LeaseLost, TickLease
from .messages import load_schema, parse_message, request_id_of
from .queue import ClaimedEntry, ListQueue, RequestQueue, StreamQueue, create_queue
from .status import STATES, RequestStatus

__all__ = [
    "STATES",
    "ClaimedEntry",
    "DeadLetters",
    "DeliveryOutcome",
    "IntakeConfig",
    "LeaseLost",
    "ListQueue",
    "RequestQueue",
    "RequestStatus",
    "StreamQueue",
    "TickLease",
    "WebhookSender",
    "create_queue",
    "encode_body",
    "load_schema",
    "parse_message",
    "push_result",
    "request_id_of",
    "sign",
    "verify_signature",
]
