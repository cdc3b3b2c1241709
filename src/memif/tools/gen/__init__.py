"""Traffic generator, forwarder and pcap replay: ``memif gen`` and ``memif pcap-replay``."""
