"""A server-agnostic conformance suite for the V2 / Open Inference Protocol: see README.md."""
