"""The harness's exit codes: one IntEnum for the CLI, the library and the run outcome.

The values follow k6 and the shell: 0 all gates passed; 1 a gate failed; 2 the input or the
measurement is not to be trusted (invalid scenario/file, INVALID run, INVALID baseline);
3 infrastructure (the stack did not start); 4 inconclusive (the evidence ran out before a
decision: a rollout short of data, ``harness decide`` with a criterion unknown and none failed);
128 + signal for an interrupted run (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; see
:mod:`harness.runner.interrupts`).
"""

from __future__ import annotations

import signal
from enum import IntEnum

EXIT_SIGNAL_BASE = 128


class ExitCode(IntEnum):
    """What a run (or a CLI command) ended with; an ``int`` for ``sys.exit``."""

    OK = 0
    GATES_FAILED = 1
    INVALID = 2
    INFRASTRUCTURE = 3
    INCONCLUSIVE = 4
    HANGUP = EXIT_SIGNAL_BASE + signal.SIGHUP  # 129
    INTERRUPTED = EXIT_SIGNAL_BASE + signal.SIGINT  # 130
    TERMINATED = EXIT_SIGNAL_BASE + signal.SIGTERM  # 143

    @classmethod
    def for_signal(cls, signum: int) -> ExitCode:
        """The code of a run interrupted by ``signum`` (128 + its number)."""
        return cls(EXIT_SIGNAL_BASE + int(signum))

    @property
    def interrupted(self) -> bool:
        """True for the signal codes (130, 143, 129)."""
        return self >= EXIT_SIGNAL_BASE


EXIT_CODES_HELP = """\
exit codes:
  0    every gate passed (validate: the scenario is valid)
  1    a gate failed (or compare --fail-on-worse found a worse metric)
  2    invalid scenario or input file, or the measurement is INVALID
  3    infrastructure failure: the stack did not start
  4    inconclusive: too little evidence to decide (a rollout step ran out of data with no
       criterion failed); the output says what would settle it
  130  interrupted by Ctrl-C; 143 by SIGTERM, 129 by SIGHUP (each handled like Ctrl-C):
       the stack is stopped, partial results are written and their path printed
"""
