"""The command line: one parser, one error boundary, one module per subcommand."""
