"""core db package."""
