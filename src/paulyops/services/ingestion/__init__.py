"""Ingestion: documents, their vocabulary, routing and the review queue."""
