"""KV-cache accounting: which request owns which cache slot. Bookkeeping only — no tensors.

The runners' caches (`omnistream.nn.kv_cache.KVCache`) are preallocated as [num_slots, kv_heads, max_len,
head_dim] per layer; a request owns one whole slot of the thinker cache while its text is generated and one
slot of the talker cache while it speaks. A request reserves its worst case (prompt + max_new_tokens) at
admission, so a running request can never run out of room and no request can touch another's slot.
The thinker slot is returned as soon as the text is finished, so new requests can start while earlier ones
are still speaking.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from omnistream.errors import CapacityError


@dataclass
class SlotPool:
    """A free list of equal-sized cache slots."""
    name: str
    num_slots: int
    slot_len: int                                   # tokens one slot holds
    _free: list[int] = field(init=False)
    _owner_slot: dict[str, int] = field(init=False, default_factory=dict)
    _reserved: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_slots < 1 or self.slot_len < 1:
            raise ValueError(f"{self.name} pool needs ≥ 1 slot of ≥ 1 token")
        self._free = list(range(self.num_slots - 1, -1, -1))      # pop() hands out slot 0 first

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_reserved_tokens(self) -> int:
        return sum(self._reserved.values())

    def fits(self, num_tokens: int) -> bool:
        """Whether a request of this size could ever run (independent of current load)."""
        return num_tokens <= self.slot_len

    def can_allocate(self, num_tokens: int) -> bool:
        return self.fits(num_tokens) and bool(self._free)

    def allocate(self, owner: str, num_tokens: int) -> int:
        if owner in self._owner_slot:
            raise ValueError(f"{owner} already holds {self.name} slot {self._owner_slot[owner]}")
        if not self.fits(num_tokens):
            raise CapacityError(f"{num_tokens} tokens exceed the {self.name} cache slot length {self.slot_len}",
                                param="max_new_tokens")
        if not self._free:
            raise CapacityError(f"no free {self.name} cache slot ({self.num_slots} in use)")
        slot = self._free.pop()
        self._owner_slot[owner] = slot
        self._reserved[owner] = num_tokens
        return slot

    def free(self, owner: str) -> int | None:
        """Return the owner's slot to the pool (no-op when it holds none); the freed slot index."""
        slot = self._owner_slot.pop(owner, None)
        if slot is not None:
            self._reserved.pop(owner, None)
            self._free.append(slot)
        return slot

    def slot_of(self, owner: str) -> int | None:
        return self._owner_slot.get(owner)

    def owners(self) -> list[str]:
        return list(self._owner_slot)


class CacheAccounts:
    """The thinker's slot pool and, for checkpoints that speak, the talker's."""

    def __init__(self, num_slots: int, thinker_len: int, talker_len: int | None) -> None:
        self.thinker = SlotPool("thinker", num_slots, thinker_len)
        self.talker = SlotPool("talker", num_slots, talker_len) if talker_len else None

    def can_admit(self, thinker_tokens: int, talker_tokens: int | None) -> bool:
        if not self.thinker.can_allocate(thinker_tokens):
            return False
        if talker_tokens is None:
            return True
        return self.talker is not None and self.talker.can_allocate(talker_tokens)

    def free_all(self, owner: str) -> None:
        self.thinker.free(owner)
        if self.talker is not None:
            self.talker.free(owner)
