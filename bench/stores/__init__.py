"""The parts of ``bench/store_ops.py``, by what they measure.

* ``common``: topics, sizes, ``Settings``, task rows, filling a store;
* ``ceiling``: SQLStore's statements written out on the bare driver (the
  ceiling), and the minimal loop;
* ``backends``: the stores under test (memory, SQLite, PostgreSQL), each SQL
  store with its ceiling's and its minimal loop's identical tables;
* ``audit``: the statement audit that keeps the ceiling honest;
* ``measure``: interleaved rounds of sides, and what they record;
* ``operations``: the operations measured on each store, and its supervisor cycle;
* ``run``: one store's section of the output, the stores' summary, ``--profile``;
* ``http_setup``, ``http_compare``: the HTTP comparison (its stores and
  servers; its measurements and output).
"""
