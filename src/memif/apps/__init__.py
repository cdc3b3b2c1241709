"""Command-line applications built on the memif library (one module per subcommand)."""
