"""services onboarding package."""
