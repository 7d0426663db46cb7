"""Authentication: password hashing, access and refresh tokens, sessions, rate limits."""
