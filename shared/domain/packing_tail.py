"""What a node that holds many jobs costs beyond its price per job: the tail it is paid for while its last job runs.

Pass 2 of the packing (``shared.domain.packing_nodes``) buys the node type with the lowest price per job it will hold,
each counted at ``tail_factor`` of it.
"""

from __future__ import annotations

import itertools
import math

# A node is paid for until its last job ends. Of n jobs started side by side with like (exponential) runtimes, the
# last ends H(n) = 1 + 1/2 + ... + 1/n mean runtimes after the start, the first after 1/n of one. A queue refills
# most lanes as they free, so only a share of that tail is paid: the share measured on the traces (docs/simulate.md,
# session 18): on nf-mag with 100 GiB root volumes an m5.24xlarge holding five 64 GiB jobs looked 9 % cheaper per job
# than an r5.4xlarge holding one, and the run cost 1.47x what it did on r5.4xlarge nodes.
TAIL_SHARE = 0.3
_HARMONIC = tuple(itertools.accumulate((1 / k for k in range(1, 4097)), initial=0.0))  # _HARMONIC[n] = H(n)


def tail_factor(jobs: int) -> float:
    """A node holding ``jobs`` lanes is counted at this much its price per lane when buying: 1 for one lane,
    1 + TAIL_SHARE × (H(jobs) − 1) for more (1.15 for two, 1.39 for five, 2.24 for ninety-six)."""
    harmonic = _HARMONIC[jobs] if jobs < len(_HARMONIC) else math.log(jobs) + 0.5772156649015329
    return 1.0 + TAIL_SHARE * (harmonic - 1.0)
