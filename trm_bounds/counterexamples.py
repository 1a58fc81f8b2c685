"""Small exact pairs that refute tempting statements (kept as tests and as documentation).

`large_error_pair`: "|Error| <= 1 always" is false. With rewards in [0, 1] what is true is
|J(theta) - J(roll)| <= 1; the surrogate L'(theta) = E_roll[R sum_t (rho_t - 1)] is not bounded
by 1 (it sums T ratio terms), so Error = J(theta) - J(roll) - L'(theta) can reach about T.
A bound above 1 therefore still bounds |Error|. A step is certified to improve J only when
L'(theta) > bound B (then J(theta) - J(roll) >= L' - B > 0), so a bound B >= 1 certifies no step
whose surrogate gain L' <= 1, i.e. no gain within the largest possible change of J.
"""

from __future__ import annotations

import numpy as np

from .pair import PolicyPair

__all__ = ["large_error_pair"]


def large_error_pair(T: int = 6, e: float = 1e-3) -> PolicyPair:
    """One prompt, V = 2, horizon T; reward 1 on the all-0 and the all-1 responses, 0 elsewhere;
    pi_roll emits 0 with probability 1 - e and pi_theta emits 1 with probability 1 - e, at every
    context. Then J(roll) = J(theta) = (1 - e)^T + e^T and
    L'(theta) = (1 - e)^T T (e/(1 - e) - 1) + e^T T ((1 - e)/e - 1) ~ -T, so Error ~ T
    (T = 6, e = 1e-3: J = 0.994, L' = -5.958, Error = 5.958).
    """
    T = int(T)
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if not (0.0 < e < 0.5):
        raise ValueError(f"e must be in (0, 1/2), got {e!r}")
    row_roll = np.log([1.0 - e, e])
    row_theta = np.log([e, 1.0 - e])
    roll = tuple(np.broadcast_to(row_roll, (1, 2**k, 2)).copy() for k in range(T))
    theta = tuple(np.broadcast_to(row_theta, (1, 2**k, 2)).copy() for k in range(T))
    reward = np.zeros((1, 2**T))
    reward[0, 0] = reward[0, -1] = 1.0  # leaf 0 = all-0 response, leaf 2^T - 1 = all-1
    return PolicyPair(roll, theta, reward, np.ones(1))
