"""A backend that leaks on purpose, for the leak gates' end-to-end test only.

Put on the backend's PYTHONPATH through ``stack.backend.env`` (tests/harness/e2e/test_e2e_soak.py);
Python imports ``sitecustomize`` at start-up, and this one patches the WebSocket session so each
frame keeps a ``LEAK_BYTES`` buffer forever (a session that keeps every frame it saw). The
production backend has no such code: nothing here is imported unless a scenario asks for it.
"""

from __future__ import annotations

LEAK_BYTES = 50 * 1024
KEPT: list[bytes] = []

try:
    from backend_patch.app.api import translate
except ImportError:  # another Python on this path (a tool, pip): nothing to patch
    translate = None  # type: ignore[assignment]

if translate is not None:
    _process = translate.TranslationSession._process

    def _leaky_process(self, text, received):  # type: ignore[no-untyped-def]
        # A fresh buffer per frame, every page written: RSS grows LEAK_BYTES a frame.
        KEPT.append(b"\x01" * LEAK_BYTES)
        return _process(self, text, received)

    translate.TranslationSession._process = _leaky_process  # type: ignore[method-assign]
