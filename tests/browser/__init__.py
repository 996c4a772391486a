"""End-to-end tests in a real Chromium browser (Playwright) against ``paulyops serve``."""
