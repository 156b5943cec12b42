"""Scripts that are not tests: the proto generator, the soaks, the benchmarks, the HTTP/2
attacks. Those that use the test helpers (``tests.support``) run as modules from the
repository root, with no ``sys.path`` edits of their own::

    python -m scripts.soak all
    python -m scripts.soak_fuzz --cases 40000
    python -m scripts.bench_disconnect 20
    python -m scripts.bench_stream_memory rest 300
    python -m scripts.bench_stream_start PID
    python -m scripts.attack_http2

``python scripts/gen_proto.py`` needs nothing of the tests and runs from anywhere.
"""
