"""The `bale` command line: parses arguments, calls the public API, maps errors to exit codes."""
