"""services storage package."""
