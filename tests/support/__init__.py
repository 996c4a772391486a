"""Test helpers that are not fixtures: a controllable TCP proxy and server subprocesses."""
