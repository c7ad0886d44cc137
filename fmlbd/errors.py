"""The errors a user can fix: each message names the setting or file and the fix.

Kept free of heavy imports, so the command line reports a bad setting before torch loads.
"""


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the valid choices."""


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or cannot serve the request; the message names the fix."""


class CacheError(RuntimeError):
    """A cached or saved file is missing, partial or unreadable; the message names the file and the fix."""
