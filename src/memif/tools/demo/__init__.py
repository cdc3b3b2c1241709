"""The switch demo: memifd, two peers and the monitor, with live counters: ``memif demo``."""
