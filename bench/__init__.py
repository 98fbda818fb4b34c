"""dropstack's benchmarks: deploy timings, zero downtime under load (against the naive restart),
throughput through Nginx against Gunicorn directly, and rolling deploys on three hosts.

``bin/bench`` runs them all on the local droplet (``python -m bench``). The pure pieces (wrk
command lines and output, statistics, the result document and its table) live apart from the
code that runs things, and are unit-tested in ``tests/bench``.
"""
