"""services agents package."""
