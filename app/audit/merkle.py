"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification.

Pure functions. Proof generation reads only complete, aligned subtrees (those a log stores as it
grows: see `append_subtrees`), so an inclusion or consistency proof costs O(log n) look-ups,
never a pass over the leaves. Leaf numbering is 0-based; see docs/audit-format.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: hash of the complete aligned subtree [start, end): end - start a power of two, start a
#: multiple of it. Raises LookupError when the log does not hold it.
SubtreeHash = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class Subtree:
    """A complete aligned subtree: leaves [index * 2**level, (index + 1) * 2**level)."""

    level: int
    index: int
    hash: bytes


def leaf_hash(entry_jcs: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || leaf bytes)."""
    return hashlib.sha256(b"\x00" + entry_jcs).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of RFC 9162 §2.1.1, computed from all the leaf hashes (a reference, for tests)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(root_from_leaves(leaf_hashes[:k]), root_from_leaves(leaf_hashes[k:]))


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"tree size must be a non-negative integer, not {size!r}")


def _range_hash(start: int, end: int, subtree_hash: SubtreeHash) -> bytes:
    """MTH of leaves [start, end) for a range the RFC recursion reaches (start aligned to the
    largest power of two not above end - start): fold its complete subtrees from the right."""
    parts: list[bytes] = []
    while start < end:
        width = 1 << ((end - start).bit_length() - 1)
        parts.append(subtree_hash(start, start + width))
        start += width
    result = parts.pop()
    while parts:
        result = node_hash(parts.pop(), result)
    return result


def root(size: int, subtree_hash: SubtreeHash) -> bytes:
    """The root of the first `size` leaves, from at most log2(size) + 1 stored subtrees."""
    _check_size(size)
    return EMPTY_ROOT if size == 0 else _range_hash(0, size, subtree_hash)


def inclusion_proof(index: int, size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, leaf to root (the sibling of the leaf first)."""
    _check_size(size)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise ValueError(f"leaf index {index!r} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            # Only the first left turn can leave an incomplete right sibling; below it every
            # subtree is complete, so the whole proof stays O(log n) look-ups.
            path.append(_range_hash(lo + k, hi, subtree_hash))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """PROOF(size1, D[size2]) of RFC 9162 §2.1.4.1; empty when size1 is 0 or equals size2."""
    _check_size(size1)
    _check_size(size2)
    if size1 > size2:
        raise ValueError(f"size1 {size1} is larger than size2 {size2}")
    if size1 == 0 or size1 == size2:
        return []
    proof: list[bytes] = []
    lo, hi, m, whole = 0, size2, size1, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_range_hash(lo + k, hi, subtree_hash))
            hi = lo + k
        else:
            proof.append(subtree_hash(lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        # The recursion ends on a left child, which is always a complete subtree.
        proof.append(subtree_hash(lo, hi))
    proof.reverse()
    return proof


def peaks(size: int) -> list[tuple[int, int]]:
    """(level, index) of the complete subtrees that make up a tree of `size` leaves, largest
    first: the only stored subtrees that appending to it reads."""
    _check_size(size)
    out: list[tuple[int, int]] = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def append_subtrees(
    size_before: int, leaf_hashes: Iterable[bytes], get: Callable[[int, int], bytes]
) -> list[Subtree]:
    """The subtrees created by appending `leaf_hashes` at size_before (each leaf and each parent
    it completes), reading through `get(level, index)` only `peaks(size_before)`."""
    # The caller can read the peaks once and insert the result in the journal's transaction.
    _check_size(size_before)
    known: dict[tuple[int, int], bytes] = {}
    new: list[Subtree] = []
    size = size_before
    for leaf in leaf_hashes:
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash must be 32 bytes")
        level, index, current = 0, size, leaf
        new.append(Subtree(0, index, current))
        while index & 1:
            left = known.get((level, index - 1))
            if left is None:
                left = get(level, index - 1)
            current = node_hash(left, current)
            level, index = level + 1, index >> 1
            new.append(Subtree(level, index, current))
        for subtree in new[-(level + 1) :]:
            known[(subtree.level, subtree.index)] = subtree.hash
        size += 1
    return new


class MemoryTree:
    """An in-memory log storing every complete subtree, keyed by (level, index)."""

    def __init__(self) -> None:
        self.size = 0
        self.subtrees: dict[tuple[int, int], bytes] = {}

    def append(self, leaf: bytes) -> list[Subtree]:
        """Append one leaf hash; returns the subtrees it created."""
        return self.extend([leaf])

    def extend(self, leaves: Iterable[bytes]) -> list[Subtree]:
        """Append leaf hashes in order; returns the subtrees they created."""
        new = append_subtrees(self.size, leaves, self.get)
        for subtree in new:
            self.subtrees[(subtree.level, subtree.index)] = subtree.hash
            if subtree.level == 0:
                self.size += 1
        return new

    def get(self, level: int, index: int) -> bytes:
        """The stored hash of subtree (level, index); KeyError if it is not complete yet."""
        return self.subtrees[(level, index)]

    def subtree_hash(self, start: int, end: int) -> bytes:
        """`SubtreeHash` over this tree: the complete aligned subtree [start, end)."""
        width = end - start
        if width <= 0 or width & (width - 1) or start % width:
            raise ValueError(f"[{start}, {end}) is not an aligned complete subtree")
        return self.get(width.bit_length() - 1, start // width)

    def root(self, size: int | None = None) -> bytes:
        """The root at `size` (default: the current size)."""
        return root(self.size if size is None else size, self.subtree_hash)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof of leaf `index` in the tree of `size` leaves (default: current)."""
        return inclusion_proof(index, self.size if size is None else size, self.subtree_hash)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Consistency proof from size1 to size2 (default: current size)."""
        return consistency_proof(size1, self.size if size2 is None else size2, self.subtree_hash)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: whether `proof` proves leaf hash `leaf` at `index` in the tree of
    `size` leaves whose root is `expected_root`. Never raises: bad input is False."""
    try:
        if not (_is_count(index) and _is_count(size) and index < size and _is_hash(leaf)):
            return False
        if not all(_is_hash(p) for p in proof):
            return False
        fn, sn, r = index, size - 1, leaf
        for p in proof:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = node_hash(p, r)
                if not fn & 1:
                    while not (fn & 1 or fn == 0):
                        fn >>= 1
                        sn >>= 1
            else:
                r = node_hash(r, p)
            fn >>= 1
            sn >>= 1
        return sn == 0 and r == expected_root
    except TypeError:
        return False


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: whether `proof` shows the tree (size1, root1) is a prefix of the tree
    (size2, root2). Never raises: bad input is False."""
    try:
        if not (_is_count(size1) and _is_count(size2)) or size1 > size2:
            return False
        # Edge cases as transparency-dev/merkle decides them: equal sizes need an empty proof
        # and equal roots; every tree extends the empty one.
        if size1 == size2:
            return len(proof) == 0 and isinstance(root1, bytes) and root1 == root2
        if size1 == 0:
            return len(proof) == 0
        if not proof or not all(_is_hash(p) for p in proof):
            return False
        if not (_is_hash(root1) and _is_hash(root2)):
            return False
        path = list(proof)
        if size1 & (size1 - 1) == 0:
            path.insert(0, root1)
        fn, sn = size1 - 1, size2 - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = path[0]
        for c in path[1:]:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                fr = node_hash(c, fr)
                sr = node_hash(c, sr)
                if not fn & 1:
                    while not (fn & 1 or fn == 0):
                        fn >>= 1
                        sn >>= 1
            else:
                sr = node_hash(sr, c)
            fn >>= 1
            sn >>= 1
        return sn == 0 and fr == root1 and sr == root2
    except TypeError:
        return False
