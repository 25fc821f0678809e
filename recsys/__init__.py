"""recsys: real-time slot recommendations for online casinos."""

__version__ = "0.1.0"
