"""One intake tick at a time, across processes: a lease in Redis.

The sensor's crash-safety argument (claim, record the run key, create the run, acknowledge) holds for ticks that
run one after another. Two ticks can overlap, though: a daemon SIGKILLed mid-tick leaves that tick's evaluation
running in its code server, which finishes it for nobody, while the next daemon already ticks (likewise a tick
abandoned after the daemon's gRPC timeout, or two daemons by mistake). Interleaved, the older tick's status
writes can make the newer one acknowledge requests as duplicates of runs that will never be created (lost), or
overwrite run keys the newer one just submitted (the request is later submitted again, under a second key).

So a tick first takes the lease and skips when another holds it; before writing anything it confirms it still
holds the lease (renewing it), so a tick stalled past the lease's expiry writes nothing. A holder that dies
holding the lease (its code server killed) delays intake by at most the lease's time to live.
"""

from __future__ import annotations

import logging
import uuid

import redis

logger = logging.getLogger(__name__)

# KEYS: lease. ARGV: token, ttl ms. Renew only if still ours.
_CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: token. Delete only if still ours (an expired lease may belong to another tick by now).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(RuntimeError):
    """The tick's lease expired and may be held by another tick: the tick must not write anything more."""


class TickLease:
    """``SET key token NX PX ttl``: held by one tick at a time, released by its holder or by expiry."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError("the lease's time to live must be positive")
        self.client = client
        self.key = key
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token = uuid.uuid4().hex
        self._confirm = client.register_script(_CONFIRM)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease; False when another tick holds it."""
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def confirm(self) -> None:
        """Renew the lease, or raise :class:`LeaseLost` when it is no longer ours."""
        if not int(self._confirm(keys=[self.key], args=[self.token, self.ttl_ms])):
            raise LeaseLost(f"intake tick lease {self.key} expired before the tick wrote its decisions")

    def release(self) -> bool:
        """Give the lease up if still ours; never raises (an unreleased lease expires by itself)."""
        try:
            return bool(int(self._release(keys=[self.key], args=[self.token])))
        except redis.RedisError as error:
            logger.warning("could not release intake tick lease %s: %s", self.key, error)
            return False

    def holder(self) -> str | None:
        """The token of the tick holding the lease, if any."""
        value = self.client.get(self.key)
        return str(value) if value is not None else None
