"""prunelimit: the library behind the book on the fundamental limit of network pruning.

Conventions used everywhere: the pruning ratio is the fraction of weights KEPT (k / D);
sparsity is 1 - ratio.
"""

__version__ = "0.1.0"
