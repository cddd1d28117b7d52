"""Fixtures of the sdturbo_ops tests: the moto server the AWS clients' tests talk to."""

from tests.support.moto_server import moto  # noqa: F401  (a fixture, offered to every test here)
