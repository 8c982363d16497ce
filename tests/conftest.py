"""Suite-wide set-up shared by every test folder."""

from __future__ import annotations

import signal

# A suite started in the background (``make test &`` in a script, a CI step without job control)
# inherits SIGINT ignored, and every harness subprocess would inherit it too: the Ctrl-C tests
# would then interrupt a process that cannot be interrupted. Children of a Python handler get the
# default disposition at exec, i.e. what a terminal's Ctrl-C meets.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
