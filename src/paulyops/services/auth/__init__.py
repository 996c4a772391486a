"""services auth package."""
