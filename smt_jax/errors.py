"""The error every layer raises for bad user input (config values, paths, checkpoints)."""


class ConfigError(ValueError):
  """A config field or input has a bad value; the message names it and the fix."""
