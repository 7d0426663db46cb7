"""Test session wiring. Service fixtures live in tests/fixtures/, one module per engine."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.api",
    "tests.fixtures.users",
    "tests.fixtures.smtp",
    "tests.fixtures.mail",
    "tests.fixtures.audit",
    "tests.fixtures.projections",
    "tests.fixtures.read_side",
]
