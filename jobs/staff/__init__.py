"""The people of the console: accounts, sign-in with a second factor and lockout, sessions."""
