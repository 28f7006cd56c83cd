"""The imperative shell: clocks, the supervisor loop, workers, the CLI."""
