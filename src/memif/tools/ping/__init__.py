"""ICMP/ARP: ``memif ping`` and ``memif responder``."""
