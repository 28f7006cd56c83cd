"""The pure core: values, the state machine and lease supervision.

No I/O, no clock reads, no threads, no randomness: time and random numbers
are parameters. Imports only the standard library, pyrsistent and returns.
"""
