"""Deployment helpers: service units and container files for an instance."""
