"""The ``users`` projection: public profiles of registered users, in MongoDB."""
