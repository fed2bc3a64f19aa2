"""Birth and merge moves on memoized statistics (Hughes & Sudderth 2013, ``bnpy``).

Online EM started where a sensor-ordered stream began keeps its components there: EM only
climbs to the nearest optimum. A *move* frees a component and re-uses it where the model
explains the data worst:

1. **Merge** the two components whose union costs least, judged from their statistics
   alone (:func:`merge_costs`): in every block the pair's statistics become their exact
   union (:func:`merge_pair`), so the merge is exact on the memoized statistics.
2. **Birth**: the freed component starts on the worst-explained points of a retained sample
   (:func:`birth_statistics`), is settled by a few EM iterations on that sample, and enters
   the model with the share of the sample it explains.

:func:`propose_move` does both and scores the result on a second, independent sample; the
caller keeps it only if that sample fits better. Pure functions, no state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamgmm.core.em import robust_m_step, run_em
from streamgmm.core.gaussian import log_gaussian_prob, precision_cholesky
from streamgmm.core.initialize import kmeans_labels, kmeans_plusplus
from streamgmm.core.params import MixtureParams
from streamgmm.core.scoring import estimate_log_prob_resp, paired_gain
from streamgmm.core.suffstats import SufficientStats

# Pairs (per pair wanted) whose merge is checked exactly on the sample.
PAIR_CANDIDATES = 4
# A move is judged on a sample by the lower confidence bound of its gain (this many
# standard errors below the mean, scoring.paired_gain): judged against the model refitted
# the same way, it no longer pays for its sample's noise, and without the bound it would
# often win on the sample's luck (on 3-D blobs a candidate one basin worse was adopted).
# Measured (seeds 0-9, benchmarks/README.md, eleventh session): half a standard error left
# the rooms stream 0.026 nats/point from batch EM on average (1: 0.031, 0: 0.037, worst
# 0.077 / 0.097 / 0.215), the LiDAR sweep 0.017 (1: 0.017, 0: 0.015) and the window's two
# buildings 0.105 (1: 0.118); the 3-D blobs end at +0.000 with either.
JUDGE_Z = 0.5


def _full_scatter(stats: SufficientStats) -> np.ndarray:
    """Per-component scatter as (K, d, d) matrices, whatever the covariance type."""
    k, d = stats.means.shape
    if stats.covariance_type == "full":
        return stats.scatter
    if stats.covariance_type == "tied":
        return np.broadcast_to(stats.scatter, (k, d, d))
    if stats.covariance_type == "diag":
        return stats.scatter[:, :, None] * np.eye(d)
    return stats.scatter[:, None, None] * np.eye(d)


def merge_costs(stats: SufficientStats, reg_covar: float) -> np.ndarray:
    """Loss of log-likelihood (nats, per unit of count) of merging each pair of components.

    With hard assignments, a Gaussian fitted to ``n`` points of covariance ``C`` explains
    them with ``-n/2 (log|C| + d log 2 pi e)``; the merged pair's covariance is the exact
    Chan merge of the two. So the cost of merging ``i`` and ``j`` (``n = n_i + n_j``) is::

        n/2 log|C_ij| - n_i/2 log|C_i| - n_j/2 log|C_j| - n_i log(n/n_i) - n_j log(n/n_j)

    (the last two terms: one weight instead of two). Returns a (K, K) array with ``inf`` on
    the diagonal.
    """
    counts = np.maximum(stats.counts, 1e-300)
    means = stats.means
    scatter = _full_scatter(stats)
    k, d = means.shape
    eye = reg_covar * np.eye(d)
    # The cost is symmetric: each pair once (the upper triangle), mirrored below.
    i, j = np.triu_indices(k, 1)
    ni, nj = counts[i], counts[j]
    n = ni + nj
    # A share that underflows (a component of no weight beside one of some) costs nothing.
    fa = np.clip(ni / n, 1e-300, 1.0)
    fb = np.clip(1.0 - fa, 1e-300, 1.0)
    delta = means[j] - means[i]
    merged = (fa[:, None, None] * scatter[i] + fb[:, None, None] * scatter[j]
              + (fa * fb)[:, None, None] * delta[:, :, None] * delta[:, None, :])
    _, logdet_pair = np.linalg.slogdet(merged + eye)
    _, logdet = np.linalg.slogdet(scatter + eye)
    with np.errstate(invalid="ignore", over="ignore"):
        upper = (0.5 * n * logdet_pair - 0.5 * ni * logdet[i] - 0.5 * nj * logdet[j]
                 + ni * np.log(fa) + nj * np.log(fb))
    upper[~np.isfinite(upper)] = np.inf  # far outliers: a merge that cannot be judged
    cost = np.full((k, k), np.inf)
    cost[i, j] = upper
    cost[j, i] = upper
    return cost


def merge_losses(Y: np.ndarray, log_norm: np.ndarray, log_resp: np.ndarray,
                 stats: SufficientStats, params: MixtureParams,
                 pairs: list[tuple[int, int]], reg_covar: float) -> np.ndarray:
    """Mean log-likelihood per point of ``Y`` lost by merging each pair, exactly.

    The merged component is the Chan merge of the pair's statistics with the sum of their
    weights; the other components stay. One single-component evaluation of ``Y`` per pair,
    all pairs in one pass (bnpy judges merges exactly on its memoized statistics the same
    way).
    """
    ctype = stats.covariance_type
    # The others' share of each point's density, sum_{k != i, j} r_k, as the total less the
    # pair's: it loses digits only where the pair holds nearly all of a point's density,
    # and there the merged component's own term decides the point's loss. Responsibilities
    # by points: the sums over components are reductions over rows.
    # (Clamped below: exp() of a far tail is zero to the sum, and slow when subnormal.)
    resp = np.exp(np.maximum(log_resp.T, -300.0))
    total = resp.sum(axis=0)
    if not pairs:
        return np.empty(0)
    first = np.array([i for i, _ in pairs])
    second = np.array([j for _, j in pairs])
    # Every candidate's union at once (the Chan merge is vectorised over components).
    joined = stats.select(first).merge(stats.select(second))
    losses = np.full(len(pairs), np.inf)
    if ctype == "tied":
        chol, ok = params.precisions_cholesky, np.arange(len(pairs))
    else:
        covariances = joined.covariances(reg_covar)
        try:
            chol, ok = precision_cholesky(covariances, ctype), np.arange(len(pairs))
        except ValueError:  # rounding left a union indefinite: not a merge to make
            ok = []
            for n in range(len(pairs)):
                try:
                    precision_cholesky(covariances[n : n + 1], ctype)
                    ok.append(n)
                except ValueError:
                    pass
            ok = np.array(ok, dtype=np.intp)
            if not len(ok):
                return losses
            chol = precision_cholesky(covariances[ok], ctype)
    # Centred on the sample (the expanded form's rounding grows with the distance to the
    # centre; for a merge's ranking it stays far below what decides it).
    log_n = log_gaussian_prob(Y, joined.means[ok], chol, ctype, Y.mean(axis=0)).T
    rest = np.maximum(total - resp[first[ok]] - resp[second[ok]], 0.0)
    weight = np.log(params.weights[first[ok]] + params.weights[second[ok]])
    with np.errstate(divide="ignore"):
        merged = np.logaddexp(log_norm + np.log(rest), weight[:, None] + log_n)
    found = np.mean(log_norm - merged, axis=1)
    losses[ok] = np.where(np.isfinite(found), found, np.inf)
    return losses


def cheapest_pairs(stats: SufficientStats, reg_covar: float, n_pairs: int,
                   exclude: tuple[int, ...] = (), exact=None) -> list[tuple[int, int]]:
    """Up to ``n_pairs`` disjoint pairs ``(i, j)``, cheapest merge first (``i`` keeps it),
    none of them touching a component of ``exclude``.

    ``exact``, if given, is ``pairs -> losses`` (:func:`merge_losses` on a sample): the
    ``PAIR_CANDIDATES`` cheapest pairs by the statistics' estimate are ranked by it.
    """
    cost = merge_costs(stats, reg_covar)
    k = cost.shape[0]
    rows, cols = np.triu_indices(k, 1)
    order = np.argsort(cost[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    if exclude:
        kept = ~(np.isin(rows, exclude) | np.isin(cols, exclude))
        rows, cols = rows[kept], cols[kept]
    candidates = list(zip(rows.tolist(), cols.tolist()))
    if exact is not None and candidates and PAIR_CANDIDATES > 0:
        candidates = candidates[:PAIR_CANDIDATES * max(1, n_pairs)]
        candidates = [candidates[o] for o in np.argsort(exact(candidates), kind="stable")]
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for a, b in candidates:
        if a in used or b in used:
            continue
        # The heavier component keeps the union, the lighter one is freed.
        pairs.append((a, b) if stats.counts[a] >= stats.counts[b] else (b, a))
        used.update((a, b))
        if len(pairs) == n_pairs:
            break
    return pairs


def merge_pair(stats: SufficientStats, i: int, j: int) -> SufficientStats:
    """Component ``i`` holds the union of ``i`` and ``j``; ``j`` is emptied (count zero)."""
    joined = stats.select([i]).merge(stats.select([j]))
    return empty(stats.replace({i: joined}), [j], like=i)


def empty(stats: SufficientStats, components, like: int | None = None) -> SufficientStats:
    """The statistics with ``components`` emptied (count zero, shape of ``like`` or kept)."""
    counts, means, scatter = stats.counts.copy(), stats.means.copy(), stats.scatter.copy()
    for k in components:
        counts[k] = 0.0
        if like is not None:
            means[k], scatter[k] = means[like], scatter[like]
    return SufficientStats(stats.covariance_type, counts, means, scatter)


def birth_statistics(Y: np.ndarray, log_norm: np.ndarray, covariance_type: str,
                     rng: np.random.Generator, n_births: int = 1) -> list[SufficientStats]:
    """Up to ``n_births`` components on the worst-explained points of ``Y``.

    Centres are drawn among the worst-explained 5% of ``Y`` (a region no component covers,
    when the stream has moved there), far from each other (k-means++ on those points); each
    newborn has the mean and covariance of its centre's nearest worst-explained neighbours.
    Counts are in points of ``Y``.
    """
    d = Y.shape[1]
    n_bad = max(int(0.05 * len(Y)), min(len(Y), 2 * d + 2))
    bad = np.argpartition(log_norm, n_bad - 1)[:n_bad]
    n_births = max(1, min(n_births, n_bad // (d + 1)))
    centres, _ = kmeans_plusplus(Y[bad], n_births, rng)
    n_near = max(n_bad // (4 * n_births), d + 1)
    born = []
    for centre in centres:
        near = bad[np.argsort(((Y[bad] - centre) ** 2).sum(axis=1))[:n_near]]
        born.append(SufficientStats.from_responsibilities(Y[near], np.ones((len(near), 1)),
                                                          covariance_type))
    return born


def split_gains(Y: np.ndarray, labels: np.ndarray, n_components: int,
                reg_covar: float = 1e-6) -> np.ndarray:
    """Log-likelihood (nats, on ``Y``) each component would gain split in two, hard-assigned.

    The mirror of :func:`merge_costs`: a component's points (``labels``) are cut at their
    mean across their principal axis, and the gain is that of two Gaussians over one::

        n/2 log|C| - n_a/2 log|C_a| - n_b/2 log|C_b| - n_a log(n/n_a) - n_b log(n/n_b)

    About zero for a component whose points are spread evenly (a floor, a wall: halving a
    uniform spread halves each half's variance, which the two weights pay back), large for
    one that covers two structures (a box and the wall behind it). ``-inf`` where a
    component or a half has too few points. Shape (n_components,).
    """
    d = Y.shape[1]
    whole = SufficientStats.from_labels(Y, labels, n_components, "full")
    eye = reg_covar * np.eye(d)
    _, vecs = np.linalg.eigh(whole.scatter + eye)
    axis = vecs[:, :, -1]  # principal axis of each component, (K, d)
    side = np.einsum("ij,ij->i", Y - whole.means[labels], axis[labels]) > 0
    halves = SufficientStats.from_labels(Y, 2 * labels + side, 2 * n_components, "full")
    # Exact point counts (the statistics' counts carry COUNT_EPS).
    n_half = np.bincount(2 * labels + side, minlength=2 * n_components).astype(np.float64)
    n_half = n_half.reshape(n_components, 2)
    n = n_half.sum(axis=1)
    _, logdet = np.linalg.slogdet(whole.scatter + eye)
    _, logdet_half = np.linalg.slogdet(halves.scatter + eye)
    logdet_half = logdet_half.reshape(n_components, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.log(np.maximum(n_half, 1.0) / np.maximum(n, 1.0)[:, None])
        gain = (0.5 * n * logdet - 0.5 * np.sum(n_half * logdet_half, axis=1)
                + np.sum(n_half * share, axis=1))
    enough = (n >= 2 * (d + 1)) & np.all(n_half > d, axis=1)
    return np.where(enough & np.isfinite(gain), gain, -np.inf)


def split_statistics(Y: np.ndarray, log_resp: np.ndarray, covariance_type: str,
                     rng: np.random.Generator, reg_covar: float = 1e-6
                     ) -> tuple[int, list[SufficientStats]]:
    """A newborn on one half of the component that most gains from a split.

    Components are ranked by :func:`split_gains` on ``Y`` (hard-assigned); the first with
    enough points is cut in two by 2-means; the newborn takes the half farther from its
    mean, and EM then shares the component's points between the two. Returns the component
    and the newborn (counts in points of ``Y``); ``(-1, [])`` when no component has enough
    points. (Ranked by the loss they carry instead, heavy even components, a floor, came
    first: on the rooms stream the worst gap of seeds 0-9 was 0.33 nats/point, 0.19 by gain.)
    """
    d = Y.shape[1]
    labels = log_resp.argmax(axis=1)
    gains = split_gains(Y, labels, log_resp.shape[1], reg_covar)
    for c in np.argsort(-gains, kind="stable"):
        pts = Y[labels == c]
        if len(pts) < 2 * (d + 1):
            continue
        halves = kmeans_labels(pts, 2, rng, max_iter=20)
        centre = pts.mean(axis=0)
        far = max((h for h in (0, 1) if np.sum(halves == h) > d),
                  key=lambda h: float(((pts[halves == h].mean(axis=0) - centre) ** 2).sum()),
                  default=None)
        if far is None:
            continue
        part = pts[halves == far]
        return int(c), [SufficientStats.from_responsibilities(part, np.ones((len(part), 1)),
                                                              covariance_type)]
    return -1, []


@dataclass(frozen=True)
class MoveProposal:
    """Merges of ``pairs`` and births in their freed components, scored on another sample."""

    pairs: list[tuple[int, int]]  # (kept, freed)
    params: MixtureParams  # the model with the move, settled on the fitting sample
    gain: float  # nats/point gained on the scoring sample over the model without the move,
    # settled on the same sample the same way (a lower confidence bound: paired_gain)
    evaluations: int  # E-step point-evaluations spent
    n_repaired: int


def with_moves(stats: SufficientStats, pairs: list[tuple[int, int]],
               newborns: list[SufficientStats]) -> SufficientStats:
    """Normalised ``stats`` with each pair merged and its newborn (one component, counts =
    its share) added in the freed slot: what the memoized sum becomes after the move."""
    merged = stats.normalized()
    for i, j in pairs:
        merged = merge_pair(merged, i, j)
    parts = [merged]
    k = stats.n_components
    for (_, j), newborn in zip(pairs, newborns):
        parts.append(one_component(newborn, j, k))
    return SufficientStats.pool(parts).normalized()


def one_component(part: SufficientStats, j: int, n_components: int) -> SufficientStats:
    """Statistics of ``n_components`` components, all empty but ``j`` = ``part``."""
    counts = np.zeros(n_components)
    counts[j] = part.counts[0]
    return SufficientStats(part.covariance_type, counts,
                           np.repeat(part.means[:1], n_components, axis=0),
                           np.repeat(part.scatter[:1], n_components, axis=0))


def propose_move(
    stats: SufficientStats, params: MixtureParams, Y: np.ndarray, V: np.ndarray,
    reg_covar: float, rng: np.random.Generator, n_iter: int = 3, n_births: int = 1,
    split: bool = False,
) -> MoveProposal:
    """Merge the cheapest pairs, give birth on ``Y``'s misfits, score on ``V``.

    Parameters
    ----------
    stats : SufficientStats
        The model's (memoized) statistics.
    params : MixtureParams
        The current parameters.
    Y, V : ndarray of shape (n, d)
        Two independent samples of the retained points: the births are fitted on ``Y`` and
        the move judged on ``V`` (judged on ``Y``, a move would often win on its noise),
        against the current model refitted on ``Y`` by the same ``n_iter`` iterations.
    reg_covar : float
    rng : numpy.random.Generator
    n_iter : int
        EM iterations on ``Y`` that settle the newborns on their regions.
    n_births : int
        Components to move at once (fewer when there are not enough components or points).
    split : bool, default=False
        Give birth inside the component that gains most from a split
        (:func:`split_statistics`) instead of on the worst-explained points.
    """
    log_norm, log_resp = estimate_log_prob_resp(Y, params)
    def exact(candidates):
        return merge_losses(Y, log_norm, log_resp, stats, params, candidates, reg_covar)

    if split:
        # The split component keeps its place: the freed one comes from another pair.
        target, born = split_statistics(Y, log_resp, stats.covariance_type, rng,
                                        reg_covar)
        pairs = cheapest_pairs(stats, reg_covar, len(born), exclude=(target,), exact=exact)
    else:
        pairs = cheapest_pairs(stats, reg_covar, max(1, min(n_births, stats.n_components // 2)),
                               exact=exact)
        born = birth_statistics(Y, log_norm, stats.covariance_type, rng, len(pairs))
    pairs = pairs[:len(born)]
    born = born[:len(pairs)]
    start = with_moves(stats, pairs, [b.scale(1.0 / len(Y)) for b in born])
    candidate, repaired = robust_m_step(start, reg_covar)
    settled = run_em(Y, candidate, reg_covar=reg_covar, tol=0.0, max_iter=n_iter, robust=True)
    # The move is judged against the model without it, settled the same way: both are then
    # fitted to Y by the same iterations and carry the same noise of a sample this size, and
    # the move gets the credit of what follows it (the component a new region had stretched
    # shrinks back once the newborn takes the region). Against the model itself, fitted on
    # every point, a move paid for its sample's noise and lost the shrinking: on the rooms
    # stream every birth in a new room was judged a loss for its first five batches.
    control = run_em(Y, params, reg_covar=reg_covar, tol=0.0, max_iter=n_iter, robust=True)
    gain = paired_gain(V, settled.params, control.params, JUDGE_Z)
    # The exact merge losses: one component on Y per candidate pair.
    merge_checks = (len(Y) * PAIR_CANDIDATES * max(1, len(pairs))) // stats.n_components
    evaluations = (len(Y) + merge_checks + len(Y) * (settled.n_iter + control.n_iter)
                   + 2 * len(V))
    return MoveProposal(pairs, settled.params, gain, evaluations,
                        int(repaired) + settled.n_repaired + control.n_repaired)
