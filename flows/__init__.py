"""Dataflow factories and the ``freshrec`` command line."""
