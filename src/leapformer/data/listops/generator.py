"""ListOps generator (Long-Range Arena ``lra_benchmarks/data/listops.py``).

**Trees.** The root is at depth 1; a node at depth ``< max_depth`` is an
operator with probability ``p_operator`` (else a digit); nodes at depth
``max_depth`` are digits, so a tree has at most ``max_depth`` levels. An
operator takes a uniform number of arguments in ``[2, max_args]`` and one of
the four operators uniformly. Trees outside the length range are rejected
(a tree is abandoned as soon as its committed length passes ``max_len``, which
does not change the distribution of the accepted ones) and duplicate sources
are dropped.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from leapformer.data.listops.expression import (
    DIGITS,
    END,
    LRA_MAX_LEN,
    LRA_MIN_LEN,
    OPERATORS,
    ListOpsExample,
    _check_int,
    evaluate,
    format_source,
)

logger = logging.getLogger(__name__)


class _TooLong(Exception):
    pass


def _sample_tokens(rng: random.Random, max_depth: int, max_args: int, p_operator: float,
                   max_len: int) -> list[str]:
    """One tree in prefix order (no parentheses); ``_TooLong`` once it must exceed ``max_len``.

    The committed length counts every announced argument as one token; it only
    grows, so a tree is abandoned exactly when its final length would be too long.
    """
    rnd = rng.random
    span = max_args - 1
    q = 1.0 - p_operator
    tokens: list[str] = []
    open_args: list[int] = []  # arguments still to draw for each open operator
    committed = 1
    while True:
        if len(open_args) + 1 < max_depth:
            u = rnd()
            if u < p_operator:
                k = 2 + int(rnd() * span)
                tokens.append(OPERATORS[int(rnd() * 4)])
                committed += k + 1
                if committed > max_len:
                    raise _TooLong
                open_args.append(k)
                continue
            digit = min(9, int((u - p_operator) / q * 10))  # u given u >= p is uniform
        else:
            digit = int(rnd() * 10)
        tokens.append(DIGITS[digit])
        while open_args:
            open_args[-1] -= 1
            if open_args[-1]:
                break
            open_args.pop()
            tokens.append(END)
        if not open_args:
            return tokens


def _max_length(max_depth: int, max_args: int, cap: int) -> int:
    """Longest expression possible with these limits (capped at ``cap``)."""
    longest = 1
    for _ in range(max_depth - 1):
        longest = min(cap, max(1, 2 + max_args * longest))
    return longest


def generate_listops(n: int, *, seed: int, min_len: int = LRA_MIN_LEN,
                     max_len: int = LRA_MAX_LEN, max_depth: int = 10, max_args: int = 10,
                     p_operator: float = 0.25, max_attempts: int | None = None,
                     progress: Callable[[int], object] | None = None) -> list[ListOpsExample]:
    """``n`` distinct ListOps examples with ``min_len <= length <= max_len`` (inclusive).

    Deterministic given ``seed`` (a private ``random.Random(seed)``, no global
    state); examples come in generation order. See the module docstring for the
    tree distribution and the length count; the defaults are LRA's.

    ``max_attempts``: trees drawn before giving up with ``ValueError`` (default
    ``1000 * n + 1_000_000``), for length ranges that are unreachable or nearly
    so. ``progress``: called with ``1`` after each accepted example (the
    signature of ``tqdm.update``).
    """
    _check_int("n", n, 0)
    _check_int("seed", seed, 0)
    _check_int("min_len", min_len, 1)
    _check_int("max_len", max_len, 1)
    _check_int("max_depth", max_depth, 1)
    _check_int("max_args", max_args, 2)
    if max_len < min_len:
        raise ValueError(f"max_len must be >= min_len, got min_len={min_len}, max_len={max_len}")
    if not isinstance(p_operator, (int, float)) or isinstance(p_operator, bool):
        raise TypeError(f"p_operator must be a float, got {type(p_operator).__name__}")
    if not 0.0 <= p_operator <= 1.0:
        raise ValueError(f"p_operator must be in [0, 1], got {p_operator}")
    if min_len > 1:
        if max_depth < 2 or p_operator == 0:
            raise ValueError(f"min_len={min_len} is unreachable: with max_depth={max_depth} and "
                             f"p_operator={p_operator} every expression is a single digit")
        if max_len < 4:
            raise ValueError(f"no expression has a length in [{min_len}, {max_len}] "
                             "(an operator needs at least 4 tokens: op, 2 arguments, ']')")
        longest = _max_length(max_depth, max_args, min_len)
        if longest < min_len:
            raise ValueError(f"min_len={min_len} is unreachable: max_depth={max_depth} and "
                             f"max_args={max_args} allow at most {longest} tokens")
    if p_operator == 1.0 and max_len == 1 and max_depth > 1:
        raise ValueError("max_len=1 is unreachable with p_operator=1 (the root is an operator)")
    if max_attempts is None:
        max_attempts = 1000 * n + 1_000_000
    _check_int("max_attempts", max_attempts, 1)

    rng = random.Random(seed)
    seen: set[str] = set()
    examples: list[ListOpsExample] = []
    attempts = too_long = duplicates = 0
    start = time.perf_counter()
    while len(examples) < n:
        if attempts >= max_attempts:
            raise ValueError(
                f"generate_listops: only {len(examples)} of n={n} examples after "
                f"max_attempts={max_attempts} trees ({too_long} too long, "
                f"{duplicates} duplicates); "
                f"the length range [{min_len}, {max_len}] is unreachable or too narrow for "
                f"max_depth={max_depth}, max_args={max_args}, p_operator={p_operator}: "
                "widen min_len/max_len or raise max_attempts")
        attempts += 1
        try:
            tokens = _sample_tokens(rng, max_depth, max_args, p_operator, max_len)
        except _TooLong:
            too_long += 1
            continue
        if len(tokens) < min_len:
            continue
        source = format_source(tokens)
        if source in seen:
            duplicates += 1
            continue
        seen.add(source)
        examples.append(ListOpsExample(source, evaluate(tokens)))
        if progress is not None:
            progress(1)
    logger.info("generated %d ListOps examples (lengths %d-%d) in %.2f s: %d trees drawn, "
                "%d too long, %d duplicates", n, min_len, max_len, time.perf_counter() - start,
                attempts, too_long, duplicates)
    return examples
