"""Dataflow steps: parsing, learning/ranking, and the Kafka and Redis I/O."""
