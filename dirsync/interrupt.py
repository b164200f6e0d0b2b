"""A polite stop: set on SIGTERM/SIGINT, checked by the engine between changes.

The engine finishes the change in flight and records it in the state store
before it looks here, so a stopped run leaves state that matches the hub.
"""

from __future__ import annotations

import threading

stop_requested = threading.Event()
