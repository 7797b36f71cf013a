"""Merkle log: append + proofs vs pymerkle 7.0.0, stores, proof sizes at 10^6 leaves.

Figures (all measured in this run):

- ``merkle.append_prove_verify``: build a tree of N leaves one append at a
  time, then produce and verify an inclusion proof for every 25th leaf;
  leaves/s over the whole job, against pymerkle 7.0.0's ``InmemoryTree``
  doing the same job on the same leaves (its proofs checked with its own
  ``verify_inclusion``). Best of a few alternating rounds, since this
  machine is shared and noisy.
- ``merkle.append.memory`` / ``merkle.append.file``: ``MerkleTree.extend``
  throughput with ``MemoryNodeStore`` and ``FileNodeStore`` (flushed).
- ``merkle.1e6.*``: a 10^6-leaf tree on ``FileNodeStore`` in a temporary
  directory: build rate, reopen time, inclusion proof size at 10^6 leaves and
  the consistency proof size from 500,000 to 10^6 (each verified), proof rate.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pymerkle

from bench.results import Recorder
from protocol.merkle import (
    FileNodeStore,
    MemoryNodeStore,
    MerkleTree,
    NodeStore,
    verify_consistency,
    verify_inclusion,
)

N_COMPARE = 50_000  # leaves for the comparison with pymerkle
EVERY = 25  # prove and verify every 25th leaf
ROUNDS = 3
N_APPEND = 300_000
N_BIG = 1_000_000
RECORD_SIZE = 130  # bytes, about one signed reading (docs/protocol.md §3)


def leaf(i: int) -> bytes:
    """Distinct record-sized leaf data."""
    return b"%0*d" % (RECORD_SIZE, i)


def pymerkle_job(leaves: list[bytes]) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for data in leaves:
        tree.append_entry(data)
    root = tree.get_root()
    for i in range(0, len(leaves), EVERY):
        proof = tree.prove_inclusion(i + 1)  # pymerkle counts leaves from 1
        pymerkle.verify_inclusion(tree.get_leaf(i + 1), root, proof)
    return time.perf_counter() - t0, root


def coldtrace_job(leaves: list[bytes]) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    tree = MerkleTree()
    for data in leaves:
        tree.append(data)
    size, root = tree.size, tree.root()
    for i in range(0, len(leaves), EVERY):
        verify_inclusion(i, size, tree.leaf_hash(i), tree.inclusion_proof(i), root)
    return time.perf_counter() - t0, root


def best_rate(n: int, job: Callable[[], float], rounds: int = 2) -> float:
    return n / min(job() for _ in range(rounds))


def timed_extend(make: Callable[[], NodeStore], leaves: list[bytes]) -> float:
    store = make()
    t0 = time.perf_counter()
    tree = MerkleTree(store)
    tree.extend(leaves)
    tree.flush()
    elapsed = time.perf_counter() - t0
    if isinstance(store, FileNodeStore):
        store.close()
    return elapsed


def progress(start: int, stop: int, step: int, t0: float) -> Iterator[bytes]:
    for i in range(start, stop):
        if i > start and i % step == 0:
            rate = (i - start) / (time.perf_counter() - t0)
            print(f"     ... {i:>9,} leaves  ({rate:,.0f} leaves/s)", flush=True)
        yield leaf(i)


def run(rec: Recorder) -> None:
    compare_with_pymerkle(rec)
    append_only(rec)
    million_leaves_on_disk(rec)


def compare_with_pymerkle(rec: Recorder) -> None:
    leaves = [leaf(i) for i in range(N_COMPARE)]
    ours, theirs = float("inf"), float("inf")
    for r in range(ROUNDS):
        t_theirs, root_theirs = pymerkle_job(leaves)
        t_ours, root_ours = coldtrace_job(leaves)
        if root_ours != root_theirs:
            raise AssertionError("pymerkle and ColdTrace disagree on the root")
        theirs, ours = min(theirs, t_theirs), min(ours, t_ours)
        print(f"     round {r + 1}/{ROUNDS}: pymerkle {t_theirs:.2f} s, ColdTrace {t_ours:.2f} s")
    rec.add(
        "merkle.append_prove_verify",
        N_COMPARE / ours,
        "leaves/s",
        baseline="pymerkle 7.0.0 InmemoryTree",
        baseline_value=N_COMPARE / theirs,
        note=f"{N_COMPARE:,} appends + {N_COMPARE // EVERY:,} proofs made and verified; same roots",
    )


def append_only(rec: Recorder) -> None:
    many = [leaf(i) for i in range(N_APPEND)]
    memory = best_rate(N_APPEND, lambda: timed_extend(MemoryNodeStore, many))
    rec.add("merkle.append.memory", memory, "leaves/s", note=f"extend, {N_APPEND:,} leaves")
    with tempfile.TemporaryDirectory(prefix="bench-merkle-") as tmp:
        dirs = iter(Path(tmp) / str(k) for k in range(10))
        file = best_rate(N_APPEND, lambda: timed_extend(lambda: FileNodeStore(next(dirs)), many))
    rec.add(
        "merkle.append.file",
        file,
        "leaves/s",
        baseline="MemoryNodeStore",
        baseline_value=memory,
        note=f"extend + flush (fsync), {N_APPEND:,} leaves",
    )


def million_leaves_on_disk(rec: Recorder) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-merkle-") as tmp:
        print(f"     building {N_BIG:,} leaves on FileNodeStore in {tmp}", flush=True)
        traced = 100_000  # the last leaves are appended under tracemalloc
        with FileNodeStore(tmp) as store:
            t0 = time.perf_counter()
            tree = MerkleTree(store)
            tree.extend(progress(0, N_BIG - traced, 200_000, t0))
            tree.flush()
            build = (N_BIG - traced) / (time.perf_counter() - t0)
            tracemalloc.start()
            tree.extend(leaf(i) for i in range(N_BIG - traced, N_BIG))
            tree.flush()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            disk = sum(p.stat().st_size for p in Path(tmp).glob("level-*.hashes"))
        rec.add(
            "merkle.1e6.build",
            build,
            "leaves/s",
            note=f"FileNodeStore, flushed; {disk / 2**20:.1f} MiB of node files",
        )
        rec.add(
            "merkle.1e6.append_heap_peak",
            peak / 1024,
            "KiB",
            note=f"Python heap peak while appending leaves {N_BIG - traced:,}..{N_BIG:,}",
        )

        t0 = time.perf_counter()
        with FileNodeStore(tmp) as store:
            tree = MerkleTree(store)
            reopen = time.perf_counter() - t0
            rec.add("merkle.1e6.reopen", reopen * 1000, "ms", note="open store + recover tree")

            root, mid = tree.root(), N_BIG // 2
            index = 123_456  # like 98 % of the leaves: in the first 2^19 + 2^18 + ...
            proof = tree.inclusion_proof(index)
            verify_inclusion(index, N_BIG, tree.leaf_hash(index), proof, root)
            note = f"leaf {index:,}; at most 20 hashes for any leaf, 19.98 on average"
            rec.add("merkle.1e6.inclusion_proof_hashes", len(proof), "hashes", note=note)
            rec.add("merkle.1e6.inclusion_proof_bytes", 32 * len(proof), "bytes", note=note)

            consistency = tree.consistency_proof(mid)
            verify_consistency(mid, N_BIG, consistency, tree.root(mid), root)
            rec.add("merkle.1e6.consistency_500k_hashes", len(consistency), "hashes")
            rec.add("merkle.1e6.consistency_500k_bytes", 32 * len(consistency), "bytes")

            sample = range(7, N_BIG, N_BIG // 5_000)
            t0 = time.perf_counter()
            for i in sample:
                verify_inclusion(i, N_BIG, tree.leaf_hash(i), tree.inclusion_proof(i), root)
            rate = len(sample) / (time.perf_counter() - t0)
            rec.add(
                "merkle.1e6.prove_verify",
                rate,
                "proofs/s",
                note="inclusion proof read from FileNodeStore + verified, spread over the tree",
            )
