"""Provider adapters behind one port (`base.Provider`), one module each; the list of them is
`jobrelay.registry`, and `pool` builds them from settings."""

from jobrelay.providers.base import CreatedJob, Provider

__all__ = ["CreatedJob", "Provider"]
