"""services marketplace package."""
