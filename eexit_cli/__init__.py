"""eexit: latency-aware early-exit inference.

Profile per-exit latency, tune exit thresholds for a mean-latency budget
(Tan et al., AAAI 2021), and evaluate them on held-out data.
"""

__version__ = "0.1.0"
