"""web routes package."""
