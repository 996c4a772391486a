"""Server-rendered HTML pages: the setup wizard, sign-in and the admin console."""
