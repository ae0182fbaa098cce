"""linewatch benchmarks: one module per service (``bench_<svc>.py``), run by ``make bench``."""
