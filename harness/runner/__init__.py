"""One run, start to finish: the orchestration between a scenario and its results.

``execute`` runs a scenario on a stack (collectors, load, timeline, watchers, analysis,
results, report) and ``open_stack`` starts the stack it names; around them: ``timeline`` (faults
and reloads at their times), ``controller`` (the rollout controller, moving the share step by
step on the judge's decisions), ``watch`` (the judge's and abort-on-fail checks off the
generator's process), ``live`` (the live file and Prometheus gauges), ``loop`` (the run's event
loop and its signals), ``progress`` (typed progress events), ``interrupts`` (Ctrl-C and SIGTERM
as results) and ``outcome`` (``RunOutcome``, ``BaselineFailed``).

Deliberately empty: importing one of these modules must not load the others (import the
defining module; the public names are on :mod:`harness`).
"""
