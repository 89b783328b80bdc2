"""``prefix_affinity``: send a prompt to the instance that most likely holds its prefix in its
KV cache, unless that instance is busier than the rest.

Ollama keeps, per parallel slot, the tokens it last processed and evaluates only what a new
prompt adds to the longest cached prefix (``prompt_eval_count`` counts just that). A multi-turn
chat, an agent loop or a RAG workload re-sends a growing prefix every turn: on the instance that
served the previous turn most of it is cached, on any other it is evaluated again.

How the strategy decides, for a request whose ``attributes["prompt"]`` holds the rendered prompt
(the Ollama hub and gateway put it there when the hub's strategy sets ``reads_prompt``; see
``render_prompt``):

1. The prompt is cut into ``block_chars``-character blocks; block *i*'s key is a hash of block
   *i* chained with the key of block *i-1* (and the model), so a key stands for the whole prefix
   up to it. A trailing partial block is not keyed.
2. A bounded LRU index maps each key to the instances that recently served a prompt with that
   prefix (at most ``max_owners``, most recent first). The candidate whose match is longest wins,
   each match scaled by how reliably that instance's answers confirmed earlier predictions.
3. A match counts only if it covers at least ``min_match_ratio`` of the prompt's blocks (and
   ``min_match_blocks``) and its instance is healthy with its breaker not open (the hub offers
   others only in panic mode). Without one, the prompt is new (a new conversation, which may
   share a system prompt that every instance soon caches): of the candidates within
   ``load_margin`` of the least loaded, the least recently picked takes it, so that
   conversations, which then stay, spread evenly.
4. Load guard: if the winner has more calls in flight (per weight) than the least loaded
   candidate by more than ``load_margin``, the ``fallback`` strategy (``p2c`` or
   ``least_loaded``) chooses among all; it also chooses for requests without a prompt.
5. The chosen instance is recorded as the newest owner of every block of the prompt.

It learns from answers: ``observe_answer`` (called by the Ollama hub with each final answer)
compares ``prompt_eval_count`` with the prompt's length (characters per token are learned from
answers that were expected to miss) to tell whether that instance's cache was hit, keeps hit and
misprediction counts, and lowers the weight of an instance whose predicted hits do not come true
(it restarted, unloaded the model, or has fewer slots than conversations).

Memory: at most ``max_blocks`` keys, each under ``ENTRY_BYTES`` (a 64-bit key, a tuple of at
most ``max_owners`` references to the instance ids the hub already holds, the LRU links); the
status reports the count, the bytes and their bound (``prefix_index_*`` counters).

Sharing between gateway replicas: with a shared state backend (``[state] backend =
"redis"``) each pick is also told to the other replicas (``ResourceHub.share`` on topic
``SHARED_TOPIC``: the instance and at most ``MAX_SHARED_KEYS`` of the prompt's block keys, the
last among them (``shared_keys``); keys are stable across processes: BLAKE2b, not Python's
salted ``hash``), in the background and batched; each replica records its
peers' picks in its own index (``apply_shared``), so lookups stay local and a conversation whose
turns alternate between replicas keeps finding the instance that holds it. A peer's entry is
checked like any untrusted input (an instance this hub has, at most ``MAX_SHARED_KEYS``
64-bit keys) and obeys the same ``max_blocks``/``max_owners`` bounds.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import attrs

from gleitzeit_core import (
    Candidate,
    EmptyPool,
    LeastLoadedStrategy,
    PowerOfTwoChoicesStrategy,
    Request,
    ResourceHub,
    Strategy,
    at_least,
    current_caller,
    one_of,
    satisfies,
)

__all__ = [
    "BASE_BYTES",
    "ENTRY_BYTES",
    "MAX_SHARED_KEYS",
    "SHARED_TOPIC",
    "PrefixAffinityStrategy",
    "PrefixIndex",
    "block_keys",
    "prompt_attributes",
    "render_prompt",
    "shared_keys",
]

C = TypeVar("C", bound=Candidate)

# Upper bound of one index entry's memory with ``max_owners`` <= 8 (64-bit int key, owner tuple,
# its share of the OrderedDict's table): measured on CPython 3.11 at 250-330 bytes depending on
# how full the table is; plus the empty index.
ENTRY_BYTES = 384
BASE_BYTES = 1024
MAX_OWNERS = 8
_KEY_BYTES = sys.getsizeof(2**64 - 1)  # the largest key's int
_REF_BYTES = sys.getsizeof((None, None)) - sys.getsizeof((None,))  # one owner in a tuple
_TUPLE_BYTES = sys.getsizeof((None,)) - _REF_BYTES  # an owner tuple without its owners
# A prompt longer than this is keyed on its first part only (bounds the work per request).
MAX_PROMPT_CHARS = 1 << 20
_FALLBACKS: dict[str, type[PowerOfTwoChoicesStrategy] | type[LeastLoadedStrategy]] = {
    "p2c": PowerOfTwoChoicesStrategy,
    "least_loaded": LeastLoadedStrategy,
}
_RECENT = 4096  # predictions kept until their answer arrives
_RELIABILITY_FLOOR = 0.1
_DECAY = 0.998  # per pick: recent picks halve in about 350 picks
SHARED_TOPIC = "prefix_affinity"  # what peers' picks are shared under (ResourceHub.share)
# block keys of a pick told to the other replicas (see ``shared_keys``): a client's 1 MiB
# prompt at block_chars = 16 has 65,536 keys, 1.3 MB of JSON per pick, which made its replica's
# publishes miss their deadline (the replica degraded) and flushed every peer's index
MAX_SHARED_KEYS = 64
_KEY_LIMIT = 1 << 64


# -- the prompt -----------------------------------------------------------------------------------
def _images(images: Any) -> str:
    if not isinstance(images, list):
        return ""
    digests = (
        hashlib.blake2b(image.encode(), digest_size=8).hexdigest()
        for image in images
        if isinstance(image, str)
    )
    return "".join(f"<image {digest}>" for digest in digests)


def render_prompt(body: Mapping[str, Any]) -> str | None:
    """The prompt an Ollama body asks the model to continue, rendered so that a request
    extending an earlier one's conversation extends its text: the tool definitions, then each
    chat message (role, content, image digests, tool calls) in order; or the generate body's
    system prompt, prompt and suffix. ``None`` when the body has neither.

    Rendering stops once ``MAX_PROMPT_CHARS`` characters are there (only they are keyed): a
    client's body of a few hundred thousand tiny messages with images would otherwise cost
    seconds of the event loop, several times what decoding the body did."""
    messages = body.get("messages")
    if isinstance(messages, list):
        parts = []
        size = 0
        tools = body.get("tools")
        if tools:
            parts.append("tools\n" + json.dumps(tools, sort_keys=True, default=str) + "\x1e")
            size = len(parts[0])
        for message in messages:
            if size >= MAX_PROMPT_CHARS:
                break
            if not isinstance(message, Mapping):
                continue
            content = message.get("content")
            text = f"{message.get('role')}\n{content if isinstance(content, str) else ''}"
            images = _images(message.get("images"))
            calls = message.get("tool_calls")
            called = json.dumps(calls, sort_keys=True, default=str) if calls else ""
            parts += (text, images, called, "\x1e")
            size += len(text) + len(images) + len(called) + 1
        return "".join(parts)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        return None
    system = body.get("system")
    suffix = body.get("suffix")
    return (
        (f"system\n{system}\x1e" if isinstance(system, str) and system else "")
        + prompt
        + _images(body.get("images"))
        + (f"\x1esuffix\n{suffix}" if isinstance(suffix, str) and suffix else "")
    )


def prompt_attributes(strategy: object, body: Mapping[str, Any]) -> dict[str, str]:
    """``{"prompt": rendered}`` for a ``Request``'s attributes when ``strategy`` reads prompts
    (``reads_prompt = True``), else nothing: other strategies do not pay for rendering."""
    if not getattr(strategy, "reads_prompt", False):
        return {}
    prompt = render_prompt(body)
    return {} if prompt is None else {"prompt": prompt}


def block_keys(prompt: str, block_chars: int, model: str = "") -> list[int]:
    """Chained 64-bit keys of the prompt's full ``block_chars`` blocks: key *i* stands for the
    model and the whole prompt up to the end of block *i*."""
    data = prompt[:MAX_PROMPT_CHARS].encode("utf-8", "surrogatepass")
    previous = hashlib.blake2b(model.encode(), digest_size=8).digest()
    keys = []
    step = block_chars
    for start in range(0, len(data) - step + 1, step):
        previous = hashlib.blake2b(previous + data[start : start + step], digest_size=8).digest()
        keys.append(int.from_bytes(previous, "big"))
    return keys


def shared_keys(keys: Sequence[int]) -> list[int]:
    """At most ``MAX_SHARED_KEYS`` of a prompt's block keys, evenly spread and always the last:
    a conversation's next turn extends the whole prompt and matches it through the last key;
    a prompt that shares only part of it matches at the nearest shared key before the fork
    (``PrefixIndex.matches`` looks up every length, so the keys in between are not needed)."""
    count = len(keys)
    if count <= MAX_SHARED_KEYS:
        return list(keys)
    step = count / MAX_SHARED_KEYS
    return [keys[math.ceil((i + 1) * step) - 1] for i in range(MAX_SHARED_KEYS)]


# -- the index ------------------------------------------------------------------------------------
class PrefixIndex:
    """Which instances recently served which prompt prefix: a bounded LRU of block keys, each
    with its owners (newest first, at most ``max_owners``)."""

    __slots__ = ("_entries", "_owner_refs", "evictions", "max_blocks", "max_owners")

    def __init__(self, max_blocks: int, max_owners: int) -> None:
        self.max_blocks = max_blocks
        self.max_owners = max_owners
        self._entries: OrderedDict[int, tuple[str, ...]] = OrderedDict()
        self._owner_refs = 0  # owners over all entries: keeps approx_bytes O(1)
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def in_lru_order(self) -> list[int]:
        """Every key, least recently used first."""
        return list(self._entries)

    def owners(self, key: int) -> tuple[str, ...]:
        return self._entries.get(key, ())

    def matches(self, keys: Sequence[int]) -> dict[str, int]:
        """For each instance seen, the number of leading blocks of ``keys`` it served last
        (its longest match), without touching the LRU order."""
        found: dict[str, int] = {}
        entries = self._entries
        for length in range(len(keys), 0, -1):
            owners = entries.get(keys[length - 1])
            if owners:
                for owner in owners:
                    found.setdefault(owner, length)
        return found

    def record(self, keys: Iterable[int], owner: str) -> None:
        """``owner`` now holds every prefix in ``keys``: it becomes their newest owner and they
        the most recently used entries; the least recently used go beyond ``max_blocks``."""
        entries = self._entries
        for key in keys:
            owners = entries.get(key)
            if owners is None:
                if len(entries) >= self.max_blocks:  # evict first: never above the bound
                    self._owner_refs -= len(entries.popitem(last=False)[1])
                    self.evictions += 1
                entries[key] = (owner,)
                self._owner_refs += 1
            else:
                if owners[0] != owner:
                    rest = tuple(o for o in owners if o != owner)
                    updated = (owner, *rest[: self.max_owners - 1])
                    entries[key] = updated
                    self._owner_refs += len(updated) - len(owners)
                entries.move_to_end(key)

    def forget(self, keys: Iterable[int], owner: str) -> None:
        """``owner`` no longer holds these prefixes (an entry left with no owner goes)."""
        entries = self._entries
        for key in keys:
            owners = entries.get(key)
            if owners is None or owner not in owners:
                continue
            rest = tuple(o for o in owners if o != owner)
            self._owner_refs -= len(owners) - len(rest)
            if rest:
                entries[key] = rest
            else:
                del entries[key]

    def max_bytes(self) -> int:
        """What ``approx_bytes`` never exceeds."""
        return BASE_BYTES + self.max_blocks * ENTRY_BYTES

    def approx_bytes(self) -> int:
        """Memory of the index itself (the owner strings are the hub's, not counted), from
        running counts: the status asks on every call, and walking 100,000 entries blocked the
        event loop for about 0.1 s each time. Each key counted at a 64-bit int's size."""
        return (
            sys.getsizeof(self._entries)
            + len(self._entries) * (_KEY_BYTES + _TUPLE_BYTES)
            + self._owner_refs * _REF_BYTES
        )


# -- the strategy ---------------------------------------------------------------------------------
def _load(candidate: Candidate) -> float:
    return candidate.in_flight / candidate.weight


def _usable(candidate: object) -> bool:
    """Healthy and breaker not open, as far as the candidate tells (a hub passes unhealthy or
    open ones only in panic mode, when nothing else is left)."""
    if getattr(candidate, "healthy", True) is False:
        return False
    health = getattr(getattr(candidate, "health", None), "value", None)
    state = getattr(getattr(getattr(candidate, "breaker", None), "state", None), "value", None)
    return health != "unhealthy" and state != "open"


@attrs.define(kw_only=True, eq=False)
class PrefixAffinityStrategy:
    """The instance holding the longest cached prefix of the prompt, unless it is busier than
    the least loaded candidate by more than ``load_margin``; else ``fallback``."""

    name: ClassVar[str] = "prefix_affinity"
    guarantees: ClassVar[frozenset[str]] = frozenset()
    sampling: ClassVar[int] = 0  # sees every candidate: the holder of the prefix may be any
    reads_prompt: ClassVar[bool] = True  # the Ollama hub renders the prompt into the request

    rng: random.Random = attrs.field(factory=random.Random, repr=False, eq=False)
    # characters per block (a token is about 4 characters of English): smaller blocks find
    # shorter shared prefixes, larger ones cost fewer keys
    block_chars: int = attrs.field(default=256, validator=at_least(16))
    # index capacity in blocks (each under ENTRY_BYTES): 100,000 blocks = 25 M characters of
    # prompts, under 39 MB
    max_blocks: int = attrs.field(default=100_000, validator=at_least(1))
    # instances remembered per block (a shared system prompt is cached on several)
    max_owners: int = attrs.field(
        default=4, validator=[at_least(1), satisfies("at most 8", lambda v: v <= MAX_OWNERS)]
    )
    # how many more calls in flight (per weight) than the least loaded candidate the preferred
    # instance may have before the fallback chooses instead
    load_margin: float = attrs.field(
        default=2.0, validator=satisfies("a number >= 0", lambda v: v >= 0)
    )
    fallback: str = attrs.field(default="p2c", validator=one_of(*sorted(_FALLBACKS)))
    # a match shorter than this many blocks counts as none (a shared greeting, say)
    min_match_blocks: int = attrs.field(default=1, validator=at_least(1))
    # nor does one covering less than this share of the prompt: a new conversation that shares
    # only a system prompt is placed for balance (every instance soon caches that prompt),
    # a conversation's next turn (mostly its own history) for its cache
    min_match_ratio: float = attrs.field(
        default=0.5, validator=satisfies("a number from 0 to 1", lambda v: 0 <= v <= 1)
    )

    # match prompts across gateway keys (tenants): a shared system prompt or document then
    # finds its instance whoever sends it, and each key learns what the others sent
    share_across_keys: bool = attrs.field(
        default=False, validator=satisfies("true or false", lambda v: isinstance(v, bool))
    )

    index: PrefixIndex = attrs.field(init=False, repr=False)
    _fallback: Strategy = attrs.field(init=False, repr=False)
    counters: dict[str, int] = attrs.field(init=False, factory=dict, repr=False)
    _reliability: dict[str, float] = attrs.field(init=False, factory=dict, repr=False)
    _picks: dict[str, int] = attrs.field(init=False, factory=dict, repr=False)
    # recent picks per instance, decaying by _DECAY per pick: balances new conversations
    _recent_picks: dict[str, tuple[float, int]] = attrs.field(init=False, factory=dict, repr=False)
    _ticks: int = attrs.field(init=False, default=0, repr=False)
    _recent: OrderedDict[int, tuple[str, int]] = attrs.field(
        init=False, factory=OrderedDict, repr=False
    )
    _chars_per_token: float = attrs.field(init=False, default=4.0, repr=False)
    _hub: ResourceHub | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self.index = PrefixIndex(self.max_blocks, self.max_owners)
        self._fallback = _FALLBACKS[self.fallback](rng=self.rng)
        for name in (
            "affine",
            "cold",
            "guarded",
            "no_prompt",
            "hits",
            "misses",
            "mispredicted",
            "peer_placements",
        ):
            self.counters[name] = 0

    def bind_hub(self, hub: ResourceHub) -> None:
        """Called by the hub that routes with this strategy: picks are shared with the other
        gateway replicas through it, and theirs recorded here."""
        self._hub = hub
        hub.on_shared(SHARED_TOPIC, self.apply_shared)

    def apply_shared(self, fact: Any, replica: str) -> None:
        """Record a peer replica's pick ``[instance, [key, ...]]`` as if made here. Raises
        ``ValueError``/``TypeError`` for anything else (the backend counts it as bad)."""
        hub = self._hub
        if not isinstance(fact, list) or len(fact) != 2:
            raise TypeError(f"a shared prefix placement is not [instance, keys]: {fact!r:.80}")
        owner, keys = fact
        if hub is None or not isinstance(owner, str) or owner not in hub:
            raise ValueError(f"a shared prefix placement names no instance here: {owner!r:.80}")
        if not isinstance(keys, list) or not keys or len(keys) > MAX_SHARED_KEYS:
            raise ValueError(f"a shared prefix placement has not 1-{MAX_SHARED_KEYS} keys")
        for key in keys:
            if type(key) is not int or not 0 <= key < _KEY_LIMIT:
                raise ValueError(f"a shared prefix key is not a 64-bit number: {key!r:.40}")
        # the hub's own string for the instance: the index holds no peer's bytes
        instance = hub.get(owner).id
        self.index.record(keys, instance)
        # the fleet's recent picks balance new conversations, not only this replica's
        self._note_pick(instance)
        self.counters["peer_placements"] += 1

    # -- choosing ---------------------------------------------------------------------------------
    def select(self, candidates: Sequence[C], request: Request) -> C:
        if not candidates:
            raise EmptyPool(self.name)
        prompt = request.attributes.get("prompt")
        if not isinstance(prompt, str) or len(prompt) < self.block_chars:
            self.counters["no_prompt"] += 1
            return self._fallback.select(candidates, request)
        model = request.attributes.get("model") or request.slot or ""
        keys = block_keys(prompt, self.block_chars, self._scope(str(model)))
        choice, matched = self._choose(candidates, request, keys)
        self.index.record(keys, choice.id)
        hub = self._hub
        if keys and hub is not None and hub.sharing:
            hub.share(SHARED_TOPIC, [choice.id, shared_keys(keys)])
        self._picks[choice.id] = self._picks.get(choice.id, 0) + 1
        self._note_pick(choice.id)
        self._recent[id(request)] = (choice.id, matched)
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return choice

    def _scope(self, model: str) -> str:
        """What a prompt's keys are chained from: the model and, unless ``share_across_keys``,
        the gateway key asking. One tenant's prompt then never matches another's: a client
        cannot have its guess of another tenant's document routed to the instance caching it
        (and read the hit off ``prompt_eval_count`` or the status counters), nor move another
        tenant's conversations by sending their prefixes."""
        caller = current_caller()
        if caller is None or self.share_across_keys:
            return model
        return f"{model}\x00{caller.name}"

    def _note_pick(self, instance: str) -> None:
        self._ticks += 1
        self._recent_picks[instance] = (self._recency(instance) + 1.0, self._ticks)

    def _recency(self, instance: str) -> float:
        score, tick = self._recent_picks.get(instance, (0.0, self._ticks))
        return float(score * _DECAY ** (self._ticks - tick))

    def _spread(self, candidates: Sequence[C]) -> C:
        """For a prompt no instance holds: among the candidates within ``load_margin`` of the
        least loaded, the least recently picked (per weight; ties at random), so that new
        conversations, which then stay, spread evenly."""
        lightest = min(_load(c) for c in candidates)
        best: C | None = None
        best_recent = 0.0
        ties = 0
        for candidate in candidates:
            if _load(candidate) - lightest > self.load_margin:
                continue
            recent = self._recency(candidate.id) / candidate.weight
            if best is None or recent < best_recent:
                best, best_recent, ties = candidate, recent, 1
            elif recent == best_recent:
                ties += 1
                if self.rng.random() * ties < 1.0:
                    best = candidate
        assert best is not None  # the least loaded is always within the margin
        return best

    def _choose(self, candidates: Sequence[C], request: Request, keys: list[int]) -> tuple[C, int]:
        matches = self.index.matches(keys)
        enough = max(self.min_match_blocks, math.ceil(self.min_match_ratio * len(keys)))
        best: C | None = None
        best_key = (0.0, 0.0, 0.0)
        best_blocks = 0
        ties = 0
        lightest = min(_load(c) for c in candidates)
        for candidate in candidates:
            blocks = matches.get(candidate.id, 0)
            if blocks < enough or not _usable(candidate):
                continue
            # longest (reliable) match first, then the lighter load, then the one picked
            # least recently (several instances hold a shared prefix), then chance
            key = (
                blocks * self._reliability.get(candidate.id, 1.0),
                -_load(candidate),
                -self._recency(candidate.id) / candidate.weight,
            )
            if best is None or key > best_key:
                best, best_key, best_blocks, ties = candidate, key, blocks, 1
            elif key == best_key:
                ties += 1
                if self.rng.random() * ties < 1.0:
                    best, best_blocks = candidate, blocks
        if best is None:
            self.counters["cold"] += 1
            choice = self._spread(candidates)
            return choice, matches.get(choice.id, 0)
        if _load(best) - lightest > self.load_margin:
            self.counters["guarded"] += 1
            choice = self._fallback.select(candidates, request)
            return choice, matches.get(choice.id, 0)
        self.counters["affine"] += 1
        return best, best_blocks

    # -- learning ---------------------------------------------------------------------------------
    def observe_answer(self, request: Request, instance: str, answer: Mapping[str, Any]) -> None:
        """Learn from an answer's ``prompt_eval_count`` whether ``instance``'s cache held the
        prompt, compared with what the index predicted when the request was routed."""
        predicted = self._recent.pop(id(request), None)
        prompt = request.attributes.get("prompt")
        evaluated = answer.get("prompt_eval_count")
        if (
            predicted is None
            or predicted[0] != instance
            or not isinstance(prompt, str)
            or not isinstance(evaluated, int)
            or isinstance(evaluated, bool)
            or evaluated <= 0
        ):
            return
        matched_blocks = predicted[1]
        if matched_blocks == 0:
            # expected to evaluate everything: learn how long a token is
            sample = len(prompt) / evaluated
            self._chars_per_token += 0.2 * (min(max(sample, 1.0), 16.0) - self._chars_per_token)
        tokens = len(prompt) / self._chars_per_token
        hit = evaluated <= 0.5 * tokens
        self.counters["hits" if hit else "misses"] += 1
        if matched_blocks == 0:
            return
        reliability = self._reliability.get(instance, 1.0)
        if hit:
            self._reliability[instance] = reliability + 0.2 * (1.0 - reliability)
            return
        self.counters["mispredicted"] += 1
        self._reliability[instance] = max(_RELIABILITY_FLOOR, reliability * 0.8)

    # -- status -----------------------------------------------------------------------------------
    def status_counters(self) -> dict[str, int]:
        """Numbers for the hub status: the index's size, bound and memory, and the decisions."""
        figures = {f"prefix_{name}": value for name, value in self.counters.items()}
        figures.update(
            prefix_index_blocks=len(self.index),
            prefix_index_max_blocks=self.max_blocks,
            prefix_index_bytes=self.index.approx_bytes(),
            prefix_index_max_bytes=self.index.max_bytes(),
            prefix_index_evictions=self.index.evictions,
        )
        return figures

    def resource_details(self, instance: str) -> dict[str, Any]:
        """Per instance: how often it was chosen and how reliable its cache proved."""
        return {
            "picks": self._picks.get(instance, 0),
            "cache_reliability": round(self._reliability.get(instance, 1.0), 3),
        }
