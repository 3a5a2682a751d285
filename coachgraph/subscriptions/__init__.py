"""Live events: broker protocol, in-process and Redis backends, fan-out and replay."""
