"""D'Claw Unified RL: the light core shared by every part (the task definition and the CLI)."""

__version__ = "0.1.0"
