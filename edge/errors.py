"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""


class MasknetError(Exception):
    """An error the user can act on. The message names the file or setting and what to do."""

    exit_code = 2


class ModelError(MasknetError):
    """A model file is missing, corrupt, or does not match its manifest."""


class ConfigError(MasknetError):
    """A configuration file or value is invalid."""


class SourceError(MasknetError):
    """A frame source (camera, video, folder) could not be opened or failed for good."""

    exit_code = 3


class HardwareError(MasknetError):
    """GPIO or other hardware could not be set up."""


class BrokerError(MasknetError):
    """The MQTT broker could not be reached or refused the connection (`masknet watch`)."""
