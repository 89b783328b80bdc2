"""``RedisState``: gateway replicas share breaker openings, ejections, load, caps and rate limits.

What goes where (``NS`` is the ``namespace`` option; all replicas of one gateway use the same):

* ``NS:replicas`` (hash: replica -> JSON of its address and start time) and ``NS:alive:ID``
  (expires after ``3 x heartbeat``): the replica registry. A replica whose key expired is dead:
  its load, reservations and concurrency counts are ignored and cleaned up.
* ``NS:events`` (pub/sub): a breaker that opened or a resource that was ejected on one replica,
  with the time left; the others apply it to their own breaker (``GatedBreaker.trip``) or
  resource. Lost while Redis is down or a replica is not listening: a replica that
  (re)subscribes asks its peers (``resync``) and they republish what they have open (at most
  once a second each), as it republishes its own when Redis is back. A replica calls itself
  ``connected`` only once its listener is subscribed.
  The same channel carries the facts hubs share (``share``: a hub name, a topic and a JSON
  value), every fact queued since the last flush in one message; each peer hands them to its
  hub's handler (``ResourceHub.receive_shared``). Lost while Redis is down (each replica keeps
  what it learnt itself; the next facts flow again once it is back).
* ``NS:load:HUB`` (hash: replica -> JSON of its calls in flight per resource and slot), written
  and read every ``sync_interval`` in one pipelined round trip: what least-loaded and p2c see.
* ``NS:cap:HUB:RESOURCE:SLOT`` (hash: replica -> places held): ``reserve`` takes a place only
  if the live replicas hold fewer than the cap, atomically (a Lua script).
* ``NS:rate:BUCKET`` (sorted set of admitted requests, by Redis's own clock, so replicas' clocks
  need not agree) and ``NS:conc:BUCKET`` (hash: replica -> requests running): per-key limits.

Staleness: breaker and ejection news arrive within a pub/sub hop (milliseconds); the load view
lags by at most ``sync_interval`` plus a round trip; caps and rate limits are exact while Redis
answers. A place under a cap (``reserve``, ``enter``) that a request gives back stays this
replica's as a spare for its next request (no round trip); one unused for a whole
``sync_interval`` goes back to Redis at the next sync (so within two), and places of a cap that
was full go back at once. Redis is thus on a request's path for each ``take`` (a key with
``requests_per_minute``) and for a place when the replica holds no spare one.

Failures: every Redis call has a deadline (``op_timeout``). The first failure makes the backend
*degraded*: it stops asking Redis on the request path and serves from local state (the hub's
own caps, local rate windows), says so in the status, and reconnects in the background; when
Redis answers again it writes its own counts back and republishes what it has open.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import attrs
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gleitzeit_core import (
    BreakerState,
    Clock,
    GatedBreaker,
    HubEvent,
    ReplicaInfo,
    Runtime,
    StateStatus,
    SystemClock,
    public_endpoint,
    satisfies,
    seconds,
    sliding_window_take,
)

__all__ = ["RedisState"]

log = logging.getLogger("gleitzeit.redis")
T = TypeVar("T")
# the longest a peer's news may hold a breaker open or a resource ejected here: anyone who can
# publish on the channel is trusted, but one message (or a bug) must not take a resource out
# for good; a longer real outage is seen again by this replica's own calls and probes
MAX_PEER_HOLD = 3600.0
# facts (``share``) per published message: one message per flush, split beyond this; a
# message from the channel with more is not read at all (counted under bad_events)
MAX_FACTS_PER_MESSAGE = 256
# bytes of one fact's JSON: a bigger one is not sent (counted under facts_too_large); and of
# one published message, which a flush splits beyond this: Redis cuts off a subscriber whose
# output buffer passes 32 MB, and a publish of megabytes misses ``op_timeout`` (which
# degrades the replica), so what one client's requests make a hub share stays small
MAX_FACT_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024
# a message from the channel longer than this is not parsed (counted under bad_events)
_MAX_READ_BYTES = MAX_MESSAGE_BYTES + 1024

# KEYS[1]: a hash replica -> count. ARGV: this replica, the cap, the alive-key prefix.
# Counts of replicas whose alive key expired are dropped first, so a crashed replica's
# places come back by themselves. Returns 0 (refused) or the free places before this one.
_RESERVE = """
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #fields, 2 do
  local replica = fields[i]
  if replica ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. replica) == 0 then
    redis.call('HDEL', KEYS[1], replica)
  else
    total = total + tonumber(fields[i + 1])
  end
end
local free = tonumber(ARGV[2]) - total
if free <= 0 then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return free
"""

# KEYS[1]: a hash replica -> count; ARGV[1]: this replica, ARGV[2]: how many places.
_RELEASE = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return left
"""

# KEYS[1]: a sorted set of admitted requests. ARGV: limit, window (ms), a unique member.
# Returns 0 (admitted) or the milliseconds until the oldest request leaves the window.
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now_ms)
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


def _fact_messages(facts: list[str]) -> Iterator[list[str]]:
    """``facts`` (each JSON of at most ``MAX_FACT_BYTES``) cut into runs of at most
    ``MAX_FACTS_PER_MESSAGE`` facts and ``MAX_MESSAGE_BYTES`` bytes, one message each."""
    chunk: list[str] = []
    size = 0
    for fact in facts:
        if chunk and (len(chunk) >= MAX_FACTS_PER_MESSAGE or size + len(fact) > MAX_MESSAGE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(fact)
        size += len(fact) + 1
    if chunk:
        yield chunk


def _shown(url: str) -> str:
    """``url`` as logs and errors may show it: no ``user:password@``, no query (``?password=``)."""
    return public_endpoint(url).partition("?")[0]


def _redis_url(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, str) and value.split("://", 1)[0] in ("redis", "rediss", "unix"):
        return
    # the error reaches the status of a refused reload, which every key may read
    satisfies("a redis://, rediss:// or unix:// URL", lambda _v: False)(
        _, attribute, _shown(value) if isinstance(value, str) else value
    )


def _default_replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@attrs.define(kw_only=True, eq=False)
class RedisState:
    """The ``redis`` state backend (see the module docstring for what it shares and how)."""

    name = "redis"

    url: str = attrs.field(default="redis://127.0.0.1:6379/0", validator=_redis_url)
    namespace: str = "gleitzeit"
    replica_id: str = attrs.field(factory=_default_replica)
    address: str | None = None  # shown to the other replicas (the gateway's URL)
    sync_interval: float = attrs.field(default=0.1, validator=seconds())
    heartbeat: float = attrs.field(default=1.0, validator=seconds())
    op_timeout: float = attrs.field(default=0.25, validator=seconds())
    clock: Clock = attrs.field(factory=SystemClock, repr=False)

    _client: Any = attrs.field(init=False, default=None, repr=False)
    _runtime: Runtime | None = attrs.field(init=False, default=None, repr=False)
    _tasks: list[asyncio.Task[None]] = attrs.field(init=False, factory=list, repr=False)
    _degraded: str | None = attrs.field(init=False, default="not started")
    # set by stop(): every loop ends at its next turn even if a cancellation was swallowed
    # (one that lands as an operation's deadline expires may surface as TimeoutError)
    _stopped: bool = attrs.field(init=False, default=False)
    _degraded_since: float | None = attrs.field(init=False, default=None)  # monotonic
    _degraded_before_s: float = attrs.field(init=False, default=0.0)  # finished outages
    _recovering: bool = attrs.field(init=False, default=False)
    _started_at: float = attrs.field(init=False, default=0.0)
    _live: dict[str, ReplicaInfo] = attrs.field(init=False, factory=dict)
    _applying: bool = attrs.field(init=False, default=False)
    # the events listener is subscribed: until then a peer's news would be lost, so the
    # backend does not call itself connected
    _listening: bool = attrs.field(init=False, default=False)
    _reconnected: asyncio.Event = attrs.field(init=False, factory=asyncio.Event, repr=False)
    _resync_answered_at: float = attrs.field(init=False, default=-math.inf)  # monotonic
    _outbox: list[tuple[str, Any]] = attrs.field(init=False, factory=list, repr=False)
    _outbox_ready: asyncio.Event = attrs.field(init=False, factory=asyncio.Event, repr=False)
    # places this replica holds in Redis (NS:cap:... and NS:conc:... keys), in use or spare
    _held: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    # held places no request uses: reused by the next reserve/enter without a round trip
    _spare: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    # the fewest spare places of each key since the last sync: that many were not needed
    _idle: dict[str, int] = attrs.field(init=False, factory=dict)
    # keys whose last reservation took the last free place (or was refused): places
    # given back go back to Redis at once, so other replicas are not kept waiting
    _contended: set[str] = attrs.field(init=False, factory=set)
    _local_windows: dict[str, collections.deque[float]] = attrs.field(init=False, factory=dict)
    _local_running: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    _scripts: dict[str, Any] = attrs.field(init=False, factory=dict, repr=False)
    _serial: Iterator[int] = attrs.field(init=False, factory=itertools.count, repr=False)
    counters: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)

    # -- the protocol ---------------------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return True

    async def start(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._started_at = time.time()
        self._client = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.op_timeout,
            socket_connect_timeout=self.op_timeout,
            health_check_interval=0,
            decode_responses=True,
        )
        self._scripts = {
            "reserve": self._client.register_script(_RESERVE),
            "release": self._client.register_script(_RELEASE),
            "take": self._client.register_script(_TAKE),
        }
        for hub in runtime.hubs.values():
            hub.listen(self._on_hub_event)
        await self._recover()  # connected now, or degraded with a reconnect loop running
        for loop in (self._sync_loop, self._heartbeat_loop, self._events_loop, self._send_loop):
            self._tasks.append(asyncio.ensure_future(loop()))

    async def stop(self) -> None:
        self._stopped = True
        self._outbox_ready.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is None:
            return
        if self._degraded is None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(self.op_timeout * 4):
                    await self._leave_registry(client)
        await client.aclose()

    async def reserve(self, hub: str, resource: str, slot: str | None, cap: int) -> bool:
        key = self._cap_key(hub, resource, slot)
        taken = await self._take_place(key, cap)
        return True if taken is None else taken  # degraded: the hub's local counts hold it

    def release(self, hub: str, resource: str, slot: str | None) -> None:
        self._give_place(self._cap_key(hub, resource, slot))

    async def take(self, bucket: str, per_minute: int) -> float:
        member = f"{self.replica_id}:{next(self._serial)}"
        wait_ms = await self._call(
            lambda: self._scripts["take"](
                keys=[self._key(f"rate:{bucket}")], args=[per_minute, 60_000, member]
            )
        )
        if wait_ms is None:  # degraded: this replica's own window
            return sliding_window_take(self._local_windows, bucket, per_minute, self.clock.now())
        return float(wait_ms) / 1000.0

    async def enter(self, bucket: str, limit: int) -> bool:
        taken = await self._take_place(self._key(f"conc:{bucket}"), limit)
        if taken is None:
            if self._local_running[bucket] >= limit:
                return False
            self._local_running[bucket] += 1
            return True
        return taken

    def leave(self, bucket: str) -> None:
        if self._local_running[bucket] > 0:
            self._local_running[bucket] -= 1
            return
        self._give_place(self._key(f"conc:{bucket}"))

    def share(self, hub: str, topic: str, fact: Any) -> None:
        encoded = json.dumps([hub, topic, fact], allow_nan=False, separators=(",", ":"))
        if len(encoded) > MAX_FACT_BYTES:  # json.dumps escapes non-ASCII: characters are bytes
            self.counters["facts_too_large"] += 1
            return
        if self._degraded is None:  # else dropped, as _send would
            self._send("fact", encoded)
            self.counters["facts_shared"] += 1

    # -- places under a cap: exact across replicas, a round trip only when none is spare -------
    async def _take_place(self, key: str, cap: int) -> bool | None:
        """One of ``cap`` places of ``key`` for this replica: a spare one it already holds
        (no round trip), else one from Redis (atomic). None while degraded."""
        spare = self._spare[key]
        if spare > 0:
            self._spare[key] = spare - 1
            self._idle[key] = min(self._idle.get(key, spare), spare - 1)
            self.counters["places_reused"] += 1
            return True
        call = asyncio.ensure_future(
            self._call(
                lambda: self._scripts["reserve"](
                    keys=[key], args=[self.replica_id, cap, self._key("alive:")]
                )
            )
        )
        try:
            free = await asyncio.shield(call)
        except asyncio.CancelledError:
            # the caller went away (a client hung up) while Redis may be granting the place:
            # give it back once granted, or it would count against the cap for good
            call.add_done_callback(functools.partial(self._give_back_granted, key))
            raise
        if free is None:
            return None
        if not free:
            self._contended.add(key)
            self.counters["reserve_refused"] += 1
            return False
        self._held[key] += 1
        if free <= 1:
            self._contended.add(key)
        else:
            self._contended.discard(key)
        return True

    def _give_back_granted(self, key: str, call: asyncio.Future[Any]) -> None:
        if not call.cancelled() and call.exception() is None and call.result():
            self._send("release", (key, 1))

    def _give_place(self, key: str) -> None:
        """End the use of a place: kept as a spare (given back to Redis by the sync loop once
        it stays unused for a whole ``sync_interval``), or given back at once when others
        may be waiting for it."""
        if self._held[key] - self._spare[key] <= 0:
            return  # taken while degraded: nothing was counted in Redis
        if key in self._contended:
            self._held[key] -= 1
            self._send("release", (key, 1))
        else:
            self._spare[key] += 1

    def _return_idle_places(self) -> None:
        """Give back the spare places that no request needed since the last sync."""
        for key, spare in list(self._spare.items()):
            idle = min(self._idle.get(key, spare), spare)
            if idle > 0:
                self._held[key] -= idle
                self._spare[key] = spare - idle
                self._send("release", (key, idle))
            left = self._spare[key]
            if left:
                self._idle[key] = left
            else:
                del self._spare[key]
                self._idle.pop(key, None)

    def status(self) -> StateStatus:
        since = self._degraded_since
        outage = time.monotonic() - since if since is not None else 0.0
        return StateStatus(
            backend=self.name,
            shared=True,
            connected=self._degraded is None and self._listening,
            degraded=self._degraded,
            replica=self.replica_id,
            replicas=sorted(self._live.values(), key=lambda r: r.id),
            staleness_s=self.sync_interval,
            limits="fleet" if self._degraded is None else "per-process",
            degraded_s=round(outage, 3),
            degraded_total_s=round(self._degraded_before_s + outage, 3),
            counters=dict(self.counters),
        )

    # -- Redis calls with a deadline; the first failure degrades --------------------------------
    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T | None:
        """Run one Redis operation, or None at once while degraded (never on a request's path
        while Redis is known to be down)."""
        if self._degraded is not None:
            return None
        try:
            async with asyncio.timeout(self.op_timeout):
                return await operation()
        except (RedisError, OSError, TimeoutError) as exc:
            self._degrade(exc)
            return None

    def _degrade(self, exc: BaseException) -> None:
        if self._degraded is None:
            self.counters["degraded"] += 1
        reason = f"redis unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
        if self._degraded is None or self._degraded == "not started":  # say so at start too
            log.warning("state backend %s: %s; serving from local state", self.shown_url, reason)
        self._degraded = reason
        if self._degraded_since is None:
            self._degraded_since = time.monotonic()
        if not self._recovering and self._client is not None and not self._stopped:
            self._recovering = True
            self._tasks.append(asyncio.ensure_future(self._reconnect_loop()))

    async def _reconnect_loop(self) -> None:
        try:
            while self._degraded is not None and self._client is not None and not self._stopped:
                await asyncio.sleep(min(1.0, self.heartbeat))
                await self._recover()
        finally:
            self._recovering = False

    async def _recover(self) -> None:
        """Connect (again), then write back what this replica knows: its registry entry, the
        places it holds, the breakers it has open and the resources it has ejected."""
        client = self._client
        try:
            async with asyncio.timeout(self.op_timeout * 4):
                await client.ping()
                await self._announce(client)
                async with client.pipeline(transaction=False) as pipe:
                    for key, held in self._held.items():
                        if held > 0:
                            pipe.hset(key, self.replica_id, held)
                        else:
                            pipe.hdel(key, self.replica_id)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._degrade(exc)
            return
        if self.counters["degraded"]:
            log.info("state backend %s: connected again; resynchronised", self.shown_url)
            self.counters["resyncs"] += 1
        self._degraded = None
        if self._degraded_since is not None:
            self._degraded_before_s += time.monotonic() - self._degraded_since
            self._degraded_since = None
        self._reconnected.set()  # the listener subscribes again now, not at its next poll
        self._republish_open()

    # -- sharing what happened ------------------------------------------------------------------
    def _on_hub_event(self, event: HubEvent) -> None:
        if self._applying or self._runtime is None:
            return  # a peer's news being applied here: do not echo it back
        hub = self._runtime.hubs.get(event.hub)
        if hub is None or event.resource not in hub:
            return
        resource = hub.get(event.resource)
        now = hub.clock.now()
        if event.kind == "breaker":
            breaker = resource.breaker
            if isinstance(breaker, GatedBreaker) and breaker.state is BreakerState.OPEN:
                left = (breaker.half_open_at or now) - now
                self._publish("breaker_open", event.hub, event.resource, left, event.detail)
        elif event.kind == "ejected" and resource.ejected_until is not None:
            left = resource.ejected_until - now
            self._publish("ejected", event.hub, event.resource, left, event.detail)

    def _republish_open(self) -> None:
        if self._runtime is None:
            return
        for hub in self._runtime.hubs.values():
            now = hub.clock.now()
            for resource in hub.members():
                breaker = resource.breaker
                if isinstance(breaker, GatedBreaker) and breaker.state is BreakerState.OPEN:
                    left = (breaker.half_open_at or now) - now
                    self._publish("breaker_open", hub.name, resource.id, left, "resync")
                if resource.is_ejected(now) and resource.ejected_until is not None:
                    left = resource.ejected_until - now
                    self._publish("ejected", hub.name, resource.id, left, "resync")

    def _answer_resync(self) -> None:
        """A peer has just (re)subscribed and missed what was published before: tell it what
        is open here. At most once a second, however many ask (a restarted fleet, or a flood
        from anyone who can publish on the channel)."""
        now = time.monotonic()
        if now - self._resync_answered_at < 1.0:
            return
        self._resync_answered_at = now
        self.counters["resyncs_answered"] += 1
        self._republish_open()

    def _publish(self, kind: str, hub: str, resource: str, left: float, detail: str) -> None:
        if left <= 0:
            return
        message = {
            "replica": self.replica_id,
            "kind": kind,
            "hub": hub,
            "resource": resource,
            "left": left,
            "detail": detail,
        }
        self._send("publish", json.dumps(message))
        self.counters["published"] += 1

    def _apply(self, message: Any) -> None:
        if not isinstance(message, dict):  # a JSON list or number would end the subscriber
            raise TypeError(f"a peer's news is not a JSON object: {message!r:.80}")
        runtime = self._runtime
        if runtime is None or message.get("replica") == self.replica_id:
            return
        if message.get("kind") == "facts":
            self._apply_facts(runtime, str(message.get("replica")), message.get("facts"))
            return
        if message.get("kind") == "resync":
            self._answer_resync()
            return
        hub = runtime.hubs.get(str(message.get("hub")))
        resource_id = message.get("resource")
        left = message.get("left")
        if hub is None or resource_id not in hub:
            return
        if isinstance(left, bool) or not isinstance(left, int | float) or not 0 < left < math.inf:
            raise ValueError(f"bad 'left' in a peer's news: {left!r}")  # counted as bad_events
        left = min(float(left), MAX_PEER_HOLD)
        resource = hub.get(str(resource_id))
        peer = str(message.get("replica"))
        now = hub.clock.now()
        self._applying = True
        try:
            if message.get("kind") == "breaker_open":
                breaker = resource.breaker
                if isinstance(breaker, GatedBreaker) and breaker.state is BreakerState.CLOSED:
                    breaker.trip(float(left), f"opened on replica {peer}")
                    self.counters["applied"] += 1
            elif message.get("kind") == "ejected":
                until = now + float(left)
                if resource.ejected_until is None or resource.ejected_until < until:
                    resource.ejected_until = until
                    resource.ejections_total += 1
                    self.counters["applied"] += 1
        finally:
            self._applying = False
        hub.wake()

    def _apply_facts(self, runtime: Runtime, peer: str, facts: Any) -> None:
        """Hand each of a peer's facts to its hub; one the hub's handler refuses is counted
        under ``bad_events`` and the others are still applied."""
        if not isinstance(facts, list) or len(facts) > MAX_FACTS_PER_MESSAGE:
            raise ValueError(f"a peer's facts are not a list of at most {MAX_FACTS_PER_MESSAGE}")
        for item in facts:
            try:
                if not isinstance(item, list) or len(item) != 3:
                    raise TypeError(f"a shared fact is not [hub, topic, fact]: {item!r:.80}")
                hub_name, topic, fact = item
                if not isinstance(hub_name, str) or not isinstance(topic, str):
                    raise TypeError(f"a shared fact's hub or topic is no name: {item!r:.80}")
                hub = runtime.hubs.get(hub_name)
                if hub is None:
                    continue  # a hub this replica does not have (another config version)
                if hub.receive_shared(topic, fact, peer):
                    self.counters["facts_applied"] += 1
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
                self.counters["bad_events"] += 1
            except Exception:  # a plugin's handler has a bug: it must not end the subscriber
                self.counters["bad_events"] += 1
                log.exception("state backend: a handler failed on a peer's fact")

    # -- background loops -------------------------------------------------------------------------
    def _send(self, op: str, argument: Any) -> None:
        """Queue a write that must not block the caller; dropped while degraded (the resync
        on reconnect writes the truth back)."""
        if self._degraded is None:
            self._outbox.append((op, argument))
            self._outbox_ready.set()

    async def _send_loop(self) -> None:
        while not self._stopped:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            batch, self._outbox = self._outbox, []
            if batch and self._degraded is None:
                await self._call(functools.partial(self._flush, batch))

    async def _flush(self, batch: list[tuple[str, Any]]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for chunk in _fact_messages([argument for op, argument in batch if op == "fact"]):
                pipe.publish(self._key("events"), self._facts_header + ",".join(chunk) + "]}")
            for op, argument in batch:
                if op == "fact":
                    continue
                if op == "publish":
                    pipe.publish(self._key("events"), argument)
                else:
                    key, count = argument
                    await self._scripts["release"](
                        keys=[key], args=[self.replica_id, count], client=pipe
                    )
            await pipe.execute()

    async def _sync_loop(self) -> None:
        """Write this replica's calls in flight and read everybody's, every ``sync_interval``."""
        while not self._stopped:
            await asyncio.sleep(self.sync_interval)
            self._return_idle_places()
            runtime = self._runtime
            replies = None
            if runtime is not None and self._degraded is None:
                hubs = list(runtime.hubs.values())
                wall = time.time()
                replies = await self._call(functools.partial(self._exchange, hubs, wall))
            if replies is None:
                self._clear_remote()
                continue
            for hub, everyone in zip(hubs, replies[2::3], strict=True):
                self._apply_load(hub, everyone, wall)

    async def _exchange(self, hubs: list[Any], wall: float) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for hub in hubs:
                mine = {
                    r.id: [r.metrics.in_flight, r.slots]
                    for r in hub.members()
                    if r.metrics.in_flight
                }
                key = self._key(f"load:{hub.name}")
                pipe.hset(key, self.replica_id, json.dumps({"at": wall, "load": mine}))
                pipe.pexpire(key, int(max(10.0, self.heartbeat * 10) * 1000))
                pipe.hgetall(key)
            result: list[Any] = await pipe.execute()
            return result

    def _apply_load(self, hub: Any, everyone: dict[str, str], wall: float) -> None:
        remote: dict[str, list[Any]] = {}
        fresh = max(1.0, self.sync_interval * 10)
        for replica, raw in everyone.items():
            if replica == self.replica_id or (self._live and replica not in self._live):
                continue
            try:
                entry = json.loads(raw)
                if wall - float(entry["at"]) > fresh:
                    continue  # a replica that stopped writing: its load is not current
                for rid, (count, slots) in entry["load"].items():
                    total = remote.setdefault(rid, [0, collections.Counter()])
                    total[0] += int(count)
                    total[1].update({str(k): int(v) for k, v in slots.items()})
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # another version's entry, or garbage (a list for a dict): ignore it
        freed = False
        for resource in hub.members():
            count, slots = remote.get(resource.id, (0, {}))
            before = resource.remote_slots
            freed = (
                freed
                or count < resource.remote_in_flight
                or any(slots.get(slot, 0) < n for slot, n in before.items())
            )
            resource.remote_in_flight = count
            resource.remote_slots = dict(slots)
        if freed:  # callers waiting for room may find it now
            hub.wake()

    def _clear_remote(self) -> None:
        """Degraded: forget the peers' load instead of trusting an old view."""
        if self._runtime is None:
            return
        for hub in self._runtime.hubs.values():
            for resource in hub.members():
                if resource.remote_in_flight or resource.remote_slots:
                    resource.remote_in_flight = 0
                    resource.remote_slots = {}
                    hub.wake()

    async def _heartbeat_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.heartbeat)
            if self._degraded is None:
                await self._call(self._beat)

    async def _beat(self) -> None:
        """Renew this replica's entry and read which replicas are alive."""
        client = self._client
        await self._announce(client)
        registry = await client.hgetall(self._key("replicas"))
        async with client.pipeline(transaction=False) as pipe:
            for replica in registry:
                pipe.pttl(self._key(f"alive:{replica}"))
            ttls = await pipe.execute()
        live: dict[str, ReplicaInfo] = {}
        ttl_full = self.heartbeat * 3
        for (replica, raw), ttl in zip(registry.items(), ttls, strict=True):
            if ttl is None or ttl < 0:  # expired: a replica that died without saying so
                await client.hdel(self._key("replicas"), replica)
                continue
            try:
                info = json.loads(raw)
                started_at = float(info.get("started_at", 0.0))
            except (ValueError, TypeError, AttributeError):  # not what _announce writes
                info, started_at = {}, 0.0
            address = info.get("address")
            live[replica] = ReplicaInfo(
                id=replica,
                address=address if isinstance(address, str) else None,
                started_at=started_at,
                heartbeat_age_s=round(max(0.0, ttl_full - ttl / 1000.0), 3),
            )
        self._live = live

    async def _events_loop(self) -> None:
        """Listen for the peers' news; reconnect (after the backend recovers) when it breaks."""
        while not self._stopped:
            if self._degraded is not None or self._client is None:
                self._reconnected.clear()  # no await since the check: a recovery is not missed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(1.0, self.heartbeat)):
                        await self._reconnected.wait()
                continue
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._key("events"))
                self._listening = True
                # news published while this replica was not listening is lost: ask the peers
                # for what they have open (a replica that just started learns it too)
                self._send("publish", json.dumps({"replica": self.replica_id, "kind": "resync"}))
                while not self._stopped:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        if self.status().degraded is not None:  # degraded meanwhile
                            break
                        continue
                    try:
                        data = message["data"]
                        if len(data) > _MAX_READ_BYTES:  # not even parsed: no peer sends it
                            raise ValueError(f"a peer's message of {len(data)} bytes")
                        self._apply(json.loads(data))
                    except (ValueError, TypeError, KeyError, RecursionError):
                        self.counters["bad_events"] += 1
            except (RedisError, OSError, TimeoutError) as exc:
                self._degrade(exc)
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    # -- helpers --------------------------------------------------------------------------------
    async def _announce(self, client: Any) -> None:
        info = json.dumps({"address": self.address, "started_at": self._started_at})
        async with client.pipeline(transaction=False) as pipe:
            pipe.hset(self._key("replicas"), self.replica_id, info)
            pipe.set(self._key(f"alive:{self.replica_id}"), "1", px=int(self.heartbeat * 3000))
            await pipe.execute()

    async def _leave_registry(self, client: Any) -> None:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hdel(self._key("replicas"), self.replica_id)
            pipe.delete(self._key(f"alive:{self.replica_id}"))
            if self._runtime is not None:
                for hub in self._runtime.hubs.values():
                    pipe.hdel(self._key(f"load:{hub.name}"), self.replica_id)
            for key, held in self._held.items():
                if held:
                    pipe.hdel(key, self.replica_id)
            await pipe.execute()

    @property
    def _facts_header(self) -> str:
        """A facts message up to its list of facts (each already JSON)."""
        replica = json.dumps(self.replica_id)
        return f'{{"replica":{replica},"kind":"facts","facts":['

    @property
    def shown_url(self) -> str:
        """The URL as logs may show it (see ``_shown``)."""
        return _shown(self.url)

    def _key(self, suffix: str) -> str:
        return f"{self.namespace}:{suffix}"

    def _cap_key(self, hub: str, resource: str, slot: str | None) -> str:
        return self._key(f"cap:{hub}:{resource}:{slot or ''}")
