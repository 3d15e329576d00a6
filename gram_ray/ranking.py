"""List-wise ranking from pairwise GRAM comparisons: knockout, tournament, round robin.

Each strategy takes ``n`` and an async ``compare(pairs)`` that returns, for each ``(i, j)``, the
probability that response ``i`` beats response ``j``. The service passes a ``compare`` that goes
through the batched scorer deployment; tests pass the offline scorer. Every comparison a strategy
needs in one step is sent as one call, so the scorer can batch it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

Compare = Callable[[list[tuple[int, int]]], Awaitable[Sequence[float]]]

STRATEGIES = ("knockout", "tournament", "round_robin")


@dataclass(frozen=True)
class RankResult:
    ranking: list[int]  # indices, best first
    scores: list[float]  # per response, in index order
    best_index: int
    comparisons: int


async def knockout(n: int, compare: Compare) -> RankResult:
    """Best-of-n by linear scan (GRAM's list-wise recipe): n - 1 sequential comparisons.

    ``scores[i]`` is the probability that ``i`` won its last comparison; the champion is first and
    the rest follow by that score (reliable for the best, approximate for the rest).
    """
    best = 0
    scores = [0.0] * n
    for challenger in range(1, n):
        (p_best,) = await compare([(best, challenger)])
        scores[best], scores[challenger] = p_best, 1.0 - p_best
        if p_best < 0.5:  # a tie keeps the incumbent
            best = challenger
    if n == 1:
        scores[0] = 1.0
    rest = sorted((i for i in range(n) if i != best), key=lambda i: -scores[i])
    return RankResult([best, *rest], scores, best, max(n - 1, 0))


async def tournament(n: int, compare: Compare) -> RankResult:
    """Single elimination, each round's comparisons in one batch: n - 1 comparisons in ⌈log2 n⌉ rounds.

    ``scores[i]`` = rounds won + the probability of winning its last match, so the ranking is by
    how far a response got, then by how close its last match was.
    """
    alive = list(range(n))
    wins = [0] * n
    last_p = [0.0] * n
    comparisons = 0
    while len(alive) > 1:
        pairs = [(alive[k], alive[k + 1]) for k in range(0, len(alive) - 1, 2)]
        results = await compare(pairs)
        comparisons += len(pairs)
        next_round = []
        for (a, b), p in zip(pairs, results, strict=True):
            winner, loser, p_win = (a, b, p) if p >= 0.5 else (b, a, 1.0 - p)
            wins[winner] += 1
            last_p[winner], last_p[loser] = p_win, 1.0 - p_win
            next_round.append(winner)
        if len(alive) % 2:
            next_round.append(alive[-1])  # a bye
        alive = next_round
    scores = [wins[i] + last_p[i] for i in range(n)]
    ranking = sorted(range(n), key=lambda i: -scores[i])
    if n == 1:
        scores, ranking = [1.0], [0]
    return RankResult(ranking, scores, ranking[0], comparisons)


async def round_robin(n: int, compare: Compare, l2: float = 1e-3) -> RankResult:
    """All n(n-1)/2 pairs in one batch; scores are Bradley-Terry strengths fitted to the soft outcomes."""
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    probabilities = list(await compare(pairs)) if pairs else []
    scores = fit_bradley_terry(n, pairs, probabilities, l2=l2)
    ranking = sorted(range(n), key=lambda i: -scores[i])
    return RankResult(ranking, scores, ranking[0], len(pairs))


def fit_bradley_terry(
    n: int, pairs: Sequence[tuple[int, int]], p: Sequence[float], l2: float = 1e-3, iterations: int = 50
) -> list[float]:
    """Maximise Σ p_ij log σ(s_i - s_j) + (1 - p_ij) log σ(s_j - s_i) - (l2/2) Σ s_i² by Newton's method.

    Soft outcomes (the judge's probabilities) keep the fit finite; the small L2 term pins the free
    offset, so scores are centred near 0. Returns the strengths ``s``.
    """
    s = [0.0] * n
    for _ in range(iterations):
        grad = [-l2 * x for x in s]
        hess = [[(-l2 if i == j else 0.0) for j in range(n)] for i in range(n)]
        for (i, j), pij in zip(pairs, p, strict=True):
            q = 1.0 / (1.0 + math.exp(-(s[i] - s[j])))
            grad[i] += pij - q
            grad[j] -= pij - q
            w = q * (1.0 - q)
            hess[i][i] -= w
            hess[j][j] -= w
            hess[i][j] += w
            hess[j][i] += w
        step = _solve(hess, grad)
        s = [x - d for x, d in zip(s, step, strict=True)]
        if max((abs(d) for d in step), default=0.0) < 1e-10:
            break
    return s


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (n is small: at most a few hundred)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            if f:
                for c in range(col, n + 1):
                    m[r][c] -= f * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


async def rank(n: int, compare: Compare, strategy: str = "knockout") -> RankResult:
    if strategy == "knockout":
        return await knockout(n, compare)
    if strategy == "tournament":
        return await tournament(n, compare)
    if strategy == "round_robin":
        return await round_robin(n, compare)
    raise ValueError(f"strategy: unknown {strategy!r} (knockout, tournament, round_robin)")
