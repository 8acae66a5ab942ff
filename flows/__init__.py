"""Dataflow factories and the ``freshrec`` command line.

Imported before numpy by both launchers (``freshrec`` and ``python -m
bytewax.run "flows.recommend:build_flow()"``): the flow's matrix products
are small (64 users x 10k items), and a second OpenBLAS thread would only
wait for the core that Kafka and Redis need (drain +2.5% with one thread;
bench/RESULTS.md). Child processes inherit the setting.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
