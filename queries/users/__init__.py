"""Who a user is, as the read side answers it: the profile behind GET /v1/users/me."""
