"""The robot runner (lab PC): runs the assigned policy at 10 Hz on the sim or Dynamixel hardware.

Imports only numpy, dynamixel-sdk, httpx and pydantic: no torch, FastAPI or SQLAlchemy.
"""
