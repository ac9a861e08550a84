"""Settings of every ifcflow process."""

from settings.config import DEFAULT_QUEUE, Settings, get_settings, load_settings_or_exit

__all__ = ["DEFAULT_QUEUE", "Settings", "get_settings", "load_settings_or_exit"]
