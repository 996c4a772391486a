"""core security package."""
