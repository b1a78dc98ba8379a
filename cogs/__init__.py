"""Discord extensions. Each is a package whose ``__init__`` holds only ``setup()``."""
