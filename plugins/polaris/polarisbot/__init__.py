"""The library behind the Polaris Errbot plugin: RSC client, addresses, policy, replies."""

__version__ = "0.1.0"
