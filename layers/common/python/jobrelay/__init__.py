"""jobrelay's shared layer: contracts, provider adapters and the decisions the handlers make."""

__version__ = "0.1.0"
