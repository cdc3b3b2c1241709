"""Mirror-port monitor with live counters and pcap capture: ``memif monitor``."""
