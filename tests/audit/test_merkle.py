"""RFC 9162 Merkle tree: the O(log n) proof generator against a naive RFC implementation, and
proof verification against honest and altered proofs."""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audit import merkle
from app.audit.merkle import MemoryTree, Subtree


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def tree_of(n: int) -> MemoryTree:
    tree = MemoryTree()
    tree.extend(leaves(n))
    return tree


# Naive RFC 9162 §2.1.3.1 PATH and §2.1.4.1 PROOF/SUBPROOF, straight from the definitions.


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    return merkle.root_from_leaves(d)


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return [*naive_path(m, d[:k]), mth(d[k:])]
    return [*naive_path(m - k, d[k:]), mth(d[:k])]


def naive_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = split(n)
    if m <= k:
        return [*naive_subproof(m, d[:k], b), mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), mth(d[:k])]


def naive_proof(m: int, d: list[bytes]) -> list[bytes]:
    return naive_subproof(m, d, True)


def test_hashes() -> None:
    assert hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert merkle.node_hash(b"l", b"r") == hashlib.sha256(b"\x01lr").digest()
    assert merkle.root_from_leaves([]) == merkle.EMPTY_ROOT
    assert MemoryTree().root() == merkle.EMPTY_ROOT


@pytest.mark.parametrize("n", range(1, 41))
def test_generator_matches_naive_rfc_for_every_proof(n: int) -> None:
    d = leaves(n)
    tree = tree_of(n)
    for size in range(1, n + 1):
        root = mth(d[:size])
        assert tree.root(size) == root
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == naive_path(index, d[:size])
            assert merkle.verify_inclusion(d[index], index, size, proof, root)
        for size1 in range(1, size + 1):
            proof = tree.consistency_proof(size1, size)
            assert proof == naive_proof(size1, d[:size])
            assert merkle.verify_consistency(size1, size, proof, mth(d[:size1]), root)


def flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    altered = list(proof)
    altered[i] = bytes([altered[i][0] ^ (1 << bit)]) + altered[i][1:]
    return altered


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 300))
def test_inclusion_proofs_verify_and_alterations_fail(data: st.DataObject, n: int) -> None:
    d = leaves(n)
    tree = tree_of(n)
    size = data.draw(st.integers(1, n), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = mth(d[:size])
    proof = tree.inclusion_proof(index, size)
    assert proof == naive_path(index, d[:size])
    assert merkle.verify_inclusion(d[index], index, size, proof, root)

    def rejects(leaf: bytes, i: int, s: int, p: list[bytes], r: bytes = root) -> bool:
        return not merkle.verify_inclusion(leaf, i, s, p, r)

    extra = data.draw(st.binary(min_size=32, max_size=32), label="extra")
    at = data.draw(st.integers(0, len(proof)), label="at")
    assert rejects(d[index], index, size, [*proof[:at], extra, *proof[at:]])
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="i")
        bit = data.draw(st.integers(0, 7), label="bit")
        assert rejects(d[index], index, size, flip(proof, i, bit))
        assert rejects(d[index], index, size, proof[:i] + proof[i + 1 :])
    for wrong in {index - 1, index + 1, index ^ 2, size, -1} - {index}:
        assert rejects(d[index], wrong, size, proof)
    for wrong_size in {size * 2, size // 2, index} - {size}:
        assert rejects(d[index], index, wrong_size, proof)
    assert rejects(merkle.leaf_hash(b"other"), index, size, proof)
    assert rejects(d[index], index, size, proof, merkle.EMPTY_ROOT)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(2, 300))
def test_consistency_proofs_verify_and_alterations_fail(data: st.DataObject, n: int) -> None:
    d = leaves(n)
    tree = tree_of(n)
    size2 = data.draw(st.integers(2, n), label="size2")
    size1 = data.draw(st.integers(1, size2 - 1), label="size1")
    root1, root2 = mth(d[:size1]), mth(d[:size2])
    proof = tree.consistency_proof(size1, size2)
    assert proof == naive_proof(size1, d[:size2])
    assert merkle.verify_consistency(size1, size2, proof, root1, root2)

    def rejects(s1: int, s2: int, p: list[bytes], r1: bytes = root1, r2: bytes = root2) -> bool:
        return not merkle.verify_consistency(s1, s2, p, r1, r2)

    i = data.draw(st.integers(0, len(proof) - 1), label="i")
    bit = data.draw(st.integers(0, 7), label="bit")
    assert rejects(size1, size2, flip(proof, i, bit))
    assert rejects(size1, size2, proof[:i] + proof[i + 1 :])
    extra = data.draw(st.binary(min_size=32, max_size=32), label="extra")
    at = data.draw(st.integers(0, len(proof)), label="at")
    assert rejects(size1, size2, [*proof[:at], extra, *proof[at:]])
    assert rejects(size1, size2, [])
    assert rejects(size1, size2, proof, root2, root1)
    assert rejects(size1, size2, proof, merkle.EMPTY_ROOT, root2)
    assert rejects(size1, size2, proof, root1, merkle.EMPTY_ROOT)
    for wrong1 in {size1 - 1, size1 + 1, size1 ^ 2} - {size1, 0}:
        assert rejects(wrong1, size2, proof)
    for wrong2 in {size2 * 2, size2 // 2} - {size2}:
        assert rejects(size1, wrong2, proof)


def test_edge_cases() -> None:
    d = leaves(5)
    root5 = mth(d)
    assert merkle.verify_consistency(5, 5, [], root5, root5)
    assert not merkle.verify_consistency(5, 5, [root5], root5, root5)
    assert not merkle.verify_consistency(5, 5, [], root5, merkle.EMPTY_ROOT)
    assert merkle.verify_consistency(0, 5, [], merkle.EMPTY_ROOT, root5)
    assert not merkle.verify_consistency(0, 5, [root5], merkle.EMPTY_ROOT, root5)
    assert not merkle.verify_consistency(6, 5, [], root5, root5)
    assert not merkle.verify_consistency(-1, 5, [], root5, root5)
    assert merkle.verify_inclusion(d[0], 0, 1, [], d[0])
    assert not merkle.verify_inclusion(d[0], 1, 1, [], d[0])
    assert not merkle.verify_inclusion(d[0], 5, 5, [], root5)
    assert not merkle.verify_inclusion(d[0], 0, 0, [], merkle.EMPTY_ROOT)
    assert tree_of(5).consistency_proof(0, 5) == []
    assert tree_of(5).consistency_proof(5, 5) == []


@pytest.mark.parametrize(
    "args",
    [
        ("leaf", 0, 1, [], b"root"),
        (b"\x00" * 32, "0", 1, [], b"\x00" * 32),
        (b"\x00" * 32, True, 2, [b"\x00" * 32], b"\x00" * 32),
        (b"\x00" * 32, 0, 2, ["not bytes"], b"\x00" * 32),
        (b"\x00" * 32, 0, 2, [None], b"\x00" * 32),
        (b"\x00" * 32, 0, 2, None, b"\x00" * 32),
        (None, None, None, None, None),
    ],
)
def test_verify_inclusion_never_raises(args: tuple[object, ...]) -> None:
    assert merkle.verify_inclusion(*args) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        (1, 2, None, b"\x00" * 32, b"\x00" * 32),
        (1, 2, [b"\x00"], b"\x00" * 32, b"\x00" * 32),
        ("1", 2, [b"\x00" * 32], b"\x00" * 32, b"\x00" * 32),
        (1, 2, [b"\x00" * 32], "root", b"\x00" * 32),
        (2, 2, [], None, None),
        (None, None, None, None, None),
    ],
)
def test_verify_consistency_never_raises(args: tuple[object, ...]) -> None:
    assert merkle.verify_consistency(*args) is False  # type: ignore[arg-type]


def test_generator_refuses_bad_arguments() -> None:
    tree = tree_of(4)
    for index, size in [(4, 4), (-1, 4), (0, 0)]:
        with pytest.raises(ValueError):
            tree.inclusion_proof(index, size)
    with pytest.raises(ValueError):
        tree.consistency_proof(3, 2)
    with pytest.raises(ValueError):
        merkle.root(-1, tree.subtree_hash)
    for start, end in [(0, 3), (1, 3), (2, 2), (3, 1)]:
        with pytest.raises(ValueError):
            tree.subtree_hash(start, end)
    with pytest.raises(KeyError):
        tree.subtree_hash(4, 8)  # not complete yet


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 1023, 1024, 1025, 4097])
def test_proofs_read_o_log_n_subtrees(n: int) -> None:
    tree = tree_of(n)
    reads = 0

    def counting(start: int, end: int) -> bytes:
        nonlocal reads
        reads += 1
        return tree.subtree_hash(start, end)

    bound = 2 * math.ceil(math.log2(n)) + 2
    for index in {0, n // 3, n // 2, n - 1}:
        reads = 0
        merkle.inclusion_proof(index, n, counting)
        assert reads <= bound
    for size1 in {1, n // 3, n // 2, n - 1} - {0}:
        reads = 0
        merkle.consistency_proof(size1, n, counting)
        assert reads <= bound
    reads = 0
    assert merkle.root(n, counting) == mth(leaves(n))
    assert reads <= math.ceil(math.log2(n)) + 1


def test_append_subtrees_one_leaf() -> None:
    tree = tree_of(11)  # 1011: appending leaf 11 completes (0,10)+(0,11) -> (1,5), then (2,2)
    reads: list[tuple[int, int]] = []

    def get(level: int, index: int) -> bytes:
        reads.append((level, index))
        return tree.get(level, index)

    new_leaf = merkle.leaf_hash(b"twelfth")
    new = merkle.append_subtrees(11, [new_leaf], get)
    assert [(s.level, s.index) for s in new] == [(0, 11), (1, 5), (2, 2)]
    assert new[0] == Subtree(0, 11, new_leaf)
    assert set(reads) <= set(merkle.peaks(11))
    assert merkle.peaks(11) == [(3, 0), (1, 4), (0, 10)]
    assert merkle.peaks(0) == []


@settings(max_examples=60, deadline=None)
@given(before=st.integers(0, 200), batch=st.integers(1, 70))
def test_append_subtrees_batch_reads_only_peaks(before: int, batch: int) -> None:
    tree = tree_of(before)
    asked: set[tuple[int, int]] = set()

    def get(level: int, index: int) -> bytes:
        asked.add((level, index))
        return tree.get(level, index)

    extra = [merkle.leaf_hash(b"new" + i.to_bytes(2, "big")) for i in range(batch)]
    new = merkle.append_subtrees(before, extra, get)
    assert asked <= set(merkle.peaks(before))
    reference = tree_of(before)
    for leaf in extra:
        reference.append(leaf)
    assert {(s.level, s.index): s.hash for s in new} == {
        key: value for key, value in reference.subtrees.items() if key not in tree.subtrees
    }
    for subtree in new:
        tree.subtrees[(subtree.level, subtree.index)] = subtree.hash
    assert merkle.root(before + batch, tree.subtree_hash) == mth(leaves(before)[:before] + extra)


def test_append_subtrees_refuses_bad_leaf() -> None:
    with pytest.raises(ValueError):
        merkle.append_subtrees(0, [b"short"], lambda level, index: b"")
