"""The HTTP API, a module per section, (``sokka.shell.http``) and ``HTTPStore`` at their edges.

Every test talks to a real uvicorn server on a loopback port
(``serve_in_background``) with ``httpx``: authentication, refusal of bad
input, the error taxonomy as RFC 9457 problems, ``HTTPStore`` mapping each
problem back to its exception, the OpenAPI document against the code, and
``/health``. A request that is refused must leave the backing store exactly
as it was: each such test compares a snapshot of every task before and after.
"""

